import HubIngest
import HubProtocol
import Testing

/// The shell a burst names; the session never calls it.
private final class Shell: DeviceConnection {
    let connectionID = "shell"
    func committed(upTo seq: UInt64?, items: Int) {}
    func replace(whenDrained drained: @escaping @Sendable () -> Void) {}
    func close(_ reason: CloseReason) {}
    func send(text: String) {}
}

private let now: Int64 = 1_763_769_600_000_000
private let second: UInt64 = 1_000_000_000

private func frame(_ seq: UInt64, readings: Int = 1) -> [UInt8] {
    TelemetryFrame(seq: seq, baseTime: now, readings: (0..<readings).map { Reading(name: "m\($0)", value: .f64(1)) }).encoded()
}

/// A session that has had its welcome over a stream at `mark`, its start committed.
private func streaming(mark: UInt64 = 0, rate: Int = 1_000, limits: DeviceStream.Limits = .init()) -> DeviceSession {
    var session = DeviceSession(device: DeviceRecordRef(key: 1, id: "d1"), framesPerSecond: rate, nowNanos: 0)
    session.attached(session: 7, remote: "127.0.0.1:1", nowMicros: now)
    _ = session.welcome(stream: DeviceStream(mark: mark, limits: limits))
    _ = session.takeBurst(for: Shell())
    _ = session.committed(upTo: nil, items: 1, writable: true)
    return session
}

/// Gates, charges and receives one binary frame at `nanos`.
@discardableResult
private func deliver(_ session: inout DeviceSession, _ bytes: [UInt8], at nanos: UInt64 = 0) -> DeviceSession.Gate {
    let gate = session.gate(.binary(bytes))
    guard gate == .take else { return gate }
    session.charge(nowNanos: nanos)
    _ = bytes.withUnsafeBytes { session.receive($0, nowMicros: now) }
    return gate
}

@Suite("Device session state machine")
struct DeviceSessionTests {
    fileprivate let shell = Shell()

    @Test("before the welcome frames are held, and come back in order with it; the session start goes in the first burst")
    func heldUntilWelcome() throws {
        var session = DeviceSession(device: DeviceRecordRef(key: 1, id: "d1"), framesPerSecond: 100, nowNanos: 0)
        session.attached(session: 3, remote: "r", nowMicros: now)
        let burst = session.takeBurst(for: shell)
        let start = try #require(burst)
        #expect(start.start?.session == 3)
        #expect(start.frames.isEmpty)
        #expect(session.gate(.binary([1])) == .kept)
        #expect(session.gate(.text([2])) == .kept)
        let reads1 = session.mayRead(writable: true, maxRepliesInFlight: 4)
        #expect(!reads1)
        #expect(session.readPending)
        let held1 = session.welcome(stream: DeviceStream(mark: 0))
        #expect(held1 == [.binary([1]), .text([2])])
        #expect(session.phase == .streaming)
        let held2 = session.welcome(stream: DeviceStream(mark: 0))
        #expect(held2 == nil)
        let reads2 = session.mayRead(writable: true, maxRepliesInFlight: 4)
        #expect(reads2)
        #expect(!session.readPending)
    }

    @Test("a read cycle's accepted frames go to ingest as one burst, counted once")
    func oneBurstPerCycle() throws {
        var session = streaming()
        _ = session.takeBurst(for: shell)
        for seq: UInt64 in 1...3 { deliver(&session, frame(seq, readings: 2)) }
        let burst1 = session.takeBurst(for: shell)
        let burst = try #require(burst1)
        #expect(burst.frames.map(\.frame.seq) == [1, 2, 3])
        #expect(burst.connection === shell)
        let burst2 = session.takeBurst(for: shell)
        #expect(burst2 == nil)
        let counts1 = session.takeCounts()
        #expect(counts1 == .init(frames: 3, readings: 6, duplicates: 0, gaps: 0))
        let counts2 = session.takeCounts()
        #expect(counts2 == .init())
    }

    @Test("a commit acks at once when the socket is writable; otherwise only the newest ack waits for writability")
    func acks() {
        var session = streaming()
        for seq: UInt64 in 1...3 { deliver(&session, frame(seq)) }
        _ = session.takeBurst(for: shell)
        let ack1 = session.committed(upTo: 2, items: 0, writable: true)
        #expect(ack1 == 2)
        let ack2 = session.committed(upTo: 3, items: 0, writable: false)
        #expect(ack2 == nil)
        let ack3 = session.committed(upTo: 1, items: 0, writable: false)
        #expect(ack3 == nil)
        let waitingAck1 = session.writableAgain()
        #expect(waitingAck1 == 3)
        let waitingAck2 = session.writableAgain()
        #expect(waitingAck2 == nil)
    }

    @Test("a committed duplicate is acked at the end of the cycle, if the socket is writable")
    func duplicateAck() {
        var session = streaming(mark: 10)
        deliver(&session, frame(4))
        let counts = session.takeCounts()
        #expect(counts.duplicates == 1)
        let end1 = session.endCycle(writable: false)
        #expect(end1.ack == nil)
        let waitingAck = session.writableAgain()
        #expect(waitingAck == 10)
        deliver(&session, frame(5))
        let end2 = session.endCycle(writable: true)
        #expect(end2.ack == 10)
    }

    @Test("past the frame rate the socket is not read; frames already read wait and are taken once the debt is paid")
    func frameRate() throws {
        var session = streaming(rate: 2)
        deliver(&session, frame(1))
        deliver(&session, frame(2))
        deliver(&session, frame(3))
        let end = session.endCycle(writable: true)
        let pause = try #require(end.pauseNanos)
        #expect(pause > 0 && pause <= second)
        let gate = deliver(&session, frame(4))
        #expect(gate == .kept)
        let reads1 = session.mayRead(writable: true, maxRepliesInFlight: 4)
        #expect(!reads1)
        let streams = session.rateRecovered()
        #expect(streams)
        let next1 = session.nextDeferred()
        #expect(next1 == .binary(frame(4)))
        let next2 = session.nextDeferred()
        #expect(next2 == nil)
        let reads2 = session.mayRead(writable: true, maxRepliesInFlight: 4)
        #expect(reads2)
    }

    @Test("a full ingest queue stops reading until it has room, and asks for room only once")
    func queueBackpressure() {
        var session = streaming()
        deliver(&session, frame(1))
        _ = session.takeBurst(for: shell)
        let waits1 = session.pushed(queueHasRoom: false)
        #expect(waits1)
        let waits2 = session.pushed(queueHasRoom: false)
        #expect(!waits2)
        let reads1 = session.mayRead(writable: true, maxRepliesInFlight: 4)
        #expect(!reads1)
        session.queueHasRoom()
        #expect(session.readPending)
        let reads2 = session.mayRead(writable: true, maxRepliesInFlight: 4)
        #expect(reads2)
    }

    @Test("reading stops while the socket is unwritable or too many command replies are in flight")
    func readGates() {
        var session = streaming()
        let reads1 = session.mayRead(writable: false, maxRepliesInFlight: 2)
        #expect(!reads1)
        session.replyPosted()
        session.replyPosted()
        let reads2 = session.mayRead(writable: true, maxRepliesInFlight: 2)
        #expect(!reads2)
        session.replyApplied()
        let reads3 = session.mayRead(writable: true, maxRepliesInFlight: 2)
        #expect(reads3)
    }

    @Test("too many bad frames close the connection at the end of the cycle, after the refusals are stored")
    func badFrames() throws {
        var limits = DeviceStream.Limits()
        limits.maxBadFrames = 2
        var session = streaming(limits: limits)
        for _ in 0..<3 {
            _ = session.gate(.binary([0xff]))
            session.charge(nowNanos: 0)
            guard case .rejected = [UInt8]([0xff]).withUnsafeBytes({ session.receive($0, nowMicros: now) }) else {
                Issue.record("not rejected")
                return
            }
        }
        let burst = session.takeBurst(for: shell)
        #expect(try #require(burst).rejections.count == 3)
        let end1 = session.endCycle(writable: true)
        #expect(end1.close == .tooManyBadFrames)
        let end2 = session.endCycle(writable: true)
        #expect(end2.close == nil)
    }

    @Test("a takeover stops taking frames, and once every burst is committed the old connection closes with 4001")
    func takeover() throws {
        var session = streaming()
        deliver(&session, frame(1))
        let burst = session.takeBurst(for: shell)
        _ = try #require(burst)
        session.replace(whenDrained: {})
        #expect(session.phase == .stopped)
        let gate = deliver(&session, frame(2))
        #expect(gate == .drop)
        let drain1 = session.drained()
        #expect(drain1 == nil)
        let ack = session.committed(upTo: 1, items: 1, writable: true)
        #expect(ack == 1)
        let drain2 = session.drained()
        let drained = try #require(drain2)
        #expect(drained.closeReplaced)
        #expect(!drained.detach)
        #expect(drained.waiters.count == 1)
        let drain3 = session.drained()
        #expect(drain3?.waiters.isEmpty == true)
    }

    @Test("a closed socket detaches once drained, and is announced offline once")
    func inactive() throws {
        var session = streaming()
        session.inactive()
        let wasOnline1 = session.goOffline()
        #expect(wasOnline1)
        let wasOnline2 = session.goOffline()
        #expect(!wasOnline2)
        let drain = session.drained()
        #expect(try #require(drain).detach)
        #expect(!session.mayAck)
        #expect(!session.mayWrite)
    }

    @Test("a close is decided once; after it nothing is written and no welcome goes out")
    func closeOnce() {
        var session = DeviceSession(device: DeviceRecordRef(key: 1, id: "d1"), framesPerSecond: 10, nowNanos: 0)
        let closes1 = session.close()
        #expect(closes1)
        let closes2 = session.close()
        #expect(!closes2)
        let answers = session.peerClosed()
        #expect(!answers)
        let held = session.welcome(stream: DeviceStream(mark: 0))
        #expect(held == nil)
        #expect(!session.mayWrite)
    }

    @Test("the heartbeat pings, and closes a device silent for two intervals")
    func heartbeat() {
        var session = streaming()
        session.heard(nowNanos: 10 * second)
        #expect(session.beat(nowNanos: 20 * second, intervalNanos: 5 * second) == .ping)
        #expect(session.beat(nowNanos: 21 * second, intervalNanos: 5 * second) == .close)
        _ = session.close()
        #expect(session.beat(nowNanos: 21 * second, intervalNanos: 5 * second) == nil)
    }

    @Test("sequence gaps are reported once each")
    func gaps() {
        var session = streaming()
        deliver(&session, frame(1))
        deliver(&session, frame(5))
        let counts1 = session.takeCounts()
        #expect(counts1.gaps == 1)
        deliver(&session, frame(6))
        let counts2 = session.takeCounts()
        #expect(counts2.gaps == 0)
    }
}
