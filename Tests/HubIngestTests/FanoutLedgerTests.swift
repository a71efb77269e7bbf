import HubIngest
import HubProtocol
import HubTestSupport
import Testing

@Suite("Fan-out ledger: each seq fanned out once, in order, through a stream repair")
struct FanoutLedgerTests {
    /// Stands for an event loop.
    final class Loop {}

    typealias Ledger = FanoutLedger<Loop>
    let device = DeviceRecordRef(key: 7, id: "k9-27")

    func frames(_ seqs: some Sequence<UInt64>) -> [AcceptedFrame] {
        seqs.map { AcceptedFrame(frame: TelemetryFrame(seq: $0, baseTime: 1_000, readings: [Reading(name: "t", value: .f64(1))]), receivedAtMicros: 1_000) }
    }

    /// What an offer lets out.
    func published(_ ledger: inout Ledger, _ seqs: some Sequence<UInt64>, from loop: Loop, hold: Bool = true) -> [UInt64] {
        let offered = frames(seqs)
        guard case .publish(let floor) = ledger.offer(device, offered, from: loop, hold: hold) else { return [] }
        return Ledger.fresh(offered, above: floor).map(\.frame.seq)
    }

    @Test("frames at or below the highest seq fanned out, or out of order within one offer, are dropped")
    func repeatsDropped() {
        var ledger = Ledger()
        let loop = Loop()
        #expect(published(&ledger, 1...3, from: loop) == [1, 2, 3])
        #expect(published(&ledger, 2...5, from: loop) == [4, 5])
        #expect(published(&ledger, [7, 6, 8, 8, 9], from: loop) == [7, 8, 9])
        #expect(ledger.highest(key: device.key) == 9)
    }

    @Test("a repair holds the device's frames; its end lets them out above what history gave, and stops holding")
    func repairHoldsThenReleases() {
        var ledger = Ledger()
        let loop = Loop()
        _ = published(&ledger, 1...160, from: loop)
        #expect(ledger.beginRepair(key: device.key) == 160)
        #expect(ledger.beginRepair(key: device.key) == nil, "one repair per device at a time")
        #expect(published(&ledger, 160...170, from: loop) == [])
        #expect(ledger.heldFrames == 11)
        // History had 161...165 (read back without holding).
        #expect(published(&ledger, 161...165, from: loop, hold: false) == [161, 162, 163, 164, 165])
        guard case .publish(let held, let floor) = ledger.endRepair(device, on: loop) else {
            Issue.record("the end of the repair on the holding loop should publish")
            return
        }
        #expect(Ledger.fresh(held, above: floor).map(\.frame.seq) == Array(166...170))
        #expect(ledger.heldFrames == 0)
        #expect(published(&ledger, 171...172, from: loop) == [171, 172])
    }

    @Test("a repair that ends on another loop moves to the loop that held the frames, which keeps holding until then")
    func endMovesToTheHolder() {
        var ledger = Ledger()
        let (device, cluster) = (Loop(), Loop())
        _ = published(&ledger, 1...160, from: device)
        _ = ledger.beginRepair(key: self.device.key)
        _ = published(&ledger, 161...258, from: device)
        guard case .moveTo(let holder) = ledger.endRepair(self.device, on: cluster) else {
            Issue.record("the end of the repair should move to the device's loop")
            return
        }
        #expect(holder === device)
        // The device's loop publishes before it runs the end: still held, not above the held ones.
        #expect(published(&ledger, 259...260, from: device) == [])
        guard case .publish(let held, let floor) = ledger.endRepair(self.device, on: holder) else {
            Issue.record("the end of the repair on the holder should publish")
            return
        }
        #expect(Ledger.fresh(held, above: floor).map(\.frame.seq) == Array(161...260))
        #expect(published(&ledger, 261...261, from: device) == [261])
    }

    @Test("past the bound, held frames are dropped and counted")
    func heldBounded() {
        var ledger = Ledger(maxHeld: 5)
        let loop = Loop()
        _ = published(&ledger, 1...1, from: loop)
        _ = ledger.beginRepair(key: device.key)
        guard case .held(let dropped) = ledger.offer(device, frames(2...9), from: loop, hold: true) else {
            Issue.record("frames under repair should be held")
            return
        }
        #expect(dropped == 3)
        #expect(ledger.heldFrames == 5)
        _ = ledger.endRepair(device, on: loop)
        #expect(ledger.heldFrames == 0)
    }

    /// The shell's order of events, in random interleavings. The device's loop offers its
    /// frames (held while the repair runs); the cluster loop offers the pages history gives,
    /// then ends the repair, which moves to the device's loop and runs there at some later
    /// point of its order. What a loop lets out reaches the dashboards when its pass ends
    /// (`FanoutBatch`), also at random points; the cluster loop's pages have gone out before
    /// it ends the repair (the end is a later task of the same loop). Whatever the
    /// interleaving, dashboards get every seq once and in order.
    @Test("in any interleaving of frames, history pages, the end of a repair and the loops' passes, dashboards get every seq once, in order")
    func interleavings() {
        var random = SeededGenerator()
        for _ in 0..<1_000 {
            var ledger = Ledger()
            let (deviceLoop, clusterLoop) = (Loop(), Loop())
            var delivered: [UInt64] = published(&ledger, 1...160, from: deviceLoop)
            _ = ledger.beginRepair(key: device.key)
            // The device resends 160, then sends on, a few frames per read cycle.
            var next: UInt64 = 160
            let last: UInt64 = 160 + UInt64.random(in: 1...200, using: &random)
            var committed: UInt64 = 160, historyRead: UInt64 = 160
            var endAsked = false, endMoved = false, ended = false
            var devicePass: [UInt64] = [], clusterPass: [UInt64] = []
            func askEnd() {
                delivered += clusterPass
                clusterPass = []
                endAsked = true
                switch ledger.endRepair(device, on: clusterLoop) {
                case .moveTo(let holder):
                    #expect(holder === deviceLoop)
                    endMoved = true
                case .publish(let held, let floor):
                    clusterPass += Ledger.fresh(held, above: floor).map(\.frame.seq)
                    ended = true
                }
            }
            while next <= last || !ended || !devicePass.isEmpty || !clusterPass.isEmpty {
                switch Int.random(in: 0..<5, using: &random) {
                case 0 where next <= last:  // a read cycle on the device's loop
                    let top = min(last, next + UInt64.random(in: 0...4, using: &random))
                    devicePass += published(&ledger, next...top, from: deviceLoop)
                    next = top + 1
                case 1 where endMoved:  // the device's loop runs the end handed to it
                    guard case .publish(let held, let floor) = ledger.endRepair(device, on: deviceLoop) else { break }
                    devicePass += Ledger.fresh(held, above: floor).map(\.frame.seq)
                    (endMoved, ended) = (false, true)
                case 2 where !endAsked:  // the repair on the cluster loop: a page, or its end
                    committed = min(next - 1, committed + UInt64.random(in: 0...20, using: &random))
                    if historyRead < committed, Bool.random(using: &random) {
                        clusterPass += published(&ledger, (historyRead + 1)...committed, from: clusterLoop, hold: false)
                        historyRead = committed
                    } else {
                        askEnd()
                    }
                case 3:  // the device's loop ends its pass
                    delivered += devicePass
                    devicePass = []
                case 4:  // the cluster loop ends its pass
                    delivered += clusterPass
                    clusterPass = []
                default:
                    if next > last, !endAsked { askEnd() }
                }
            }
            #expect(ledger.heldFrames == 0)
            if delivered != Array(1...last) {
                let at = zip(delivered, 1...last).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(delivered.count, Int(last))
                Issue.record("seed \(random.seed): dashboards got \(delivered[at...].prefix(12)) after seq \(at), \(delivered.count) in all, for 1…\(last)")
                return
            }
        }
    }
}
