import Foundation
import HubIngest
import HubProtocol
import Logging
import NIOConcurrencyHelpers
import Testing

/// A sink that refuses, as PostgreSQL would for its content, every batch holding a frame
/// with the reading name `poison`.
final class RefusingSink: IngestSink, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var stored: [UInt64] = []
    private(set) var rejected: [(seq: UInt64?, reason: String)] = []
    private(set) var attempts = 0

    func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence> {
        try lock.withLock {
            attempts += 1
            if bursts.contains(where: { $0.frames.contains { $0.frame.readings.contains { $0.name == "poison" } } }) {
                throw StorageFailure.refused("value out of range")
            }
            for burst in bursts {
                stored += burst.frames.map(\.frame.seq)
                rejected += burst.rejections.map { ($0.seq, $0.reason) }
            }
            return []
        }
    }

    func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64] { [:] }

    var snapshot: (stored: [UInt64], rejected: [(seq: UInt64?, reason: String)]) { lock.withLock { (stored, rejected) } }
}

@Suite("Hostile input in ingest: refused frames, metric-name limits, subscription matching")
struct HostileIngestTests {
    func frame(_ seq: UInt64, _ names: [String]) -> AcceptedFrame {
        AcceptedFrame(frame: TelemetryFrame(seq: seq, baseTime: 1, readings: names.map { Reading(name: $0, value: .i64(1)) }), receivedAtMicros: 1)
    }

    @Test("a batch the database refuses for one frame stores every other frame, quarantines that one, tells its device, and acks all")
    func refusedFrameIsIsolated() async throws {
        let sink = RefusingSink()
        let queue = IngestQueue(capacityRows: 10_000)
        let registry = DeviceRegistry()
        var configuration = IngestWriter.Configuration(policy: FlushPolicy(maxRows: 10_000, maxDelayNanos: 50_000_000))
        configuration.minBackoffNanos = 1_000_000
        let writer = IngestWriter(queue: queue, sink: sink, registry: registry, configuration: configuration, logger: Logger(label: "test"))
        var connections: [RecordingConnection] = []
        // Eight devices share the batch; device 3 sends the poison in the middle of its burst.
        for key in 1...8 as ClosedRange<Int32> {
            let connection = RecordingConnection()
            connections.append(connection)
            var burst = IngestBurst(device: DeviceRecordRef(key: key, id: "d\(key)"), connection: connection)
            burst.frames = (1...5).map { seq in frame(UInt64(seq), key == 3 && seq == 3 ? ["t", "poison"] : ["t"]) }
            queue.push(burst, nowNanos: 0)
        }
        writer.start()
        try await Task.sleep(for: .milliseconds(200))
        await writer.shutdown()
        let (stored, rejected) = sink.snapshot
        #expect(stored.count == 8 * 5 - 1)
        #expect(rejected.count == 1)
        #expect(rejected.first?.seq == 3)
        #expect(rejected.first?.reason.hasPrefix("storage_refused") == true)
        for (index, connection) in connections.enumerated() {
            #expect(connection.snapshot.acks == [5], "device \(index + 1)")
            #expect(connection.snapshot.items == 1, "device \(index + 1)")
        }
        #expect(connections[2].snapshot.texts.count == 1)
        #expect(connections[2].snapshot.texts.first?.contains(#""type":"rejected","seq":3"#) == true)
        #expect(connections[0].snapshot.texts.isEmpty)
    }

    @Test("a device may report at most its limit of metric names, the hub at most its total; known names always pass")
    func metricLimits() {
        var limits = MetricCatalog.Limits()
        limits.perDevice = 3
        limits.total = 5
        let catalog = MetricCatalog(limits: limits)
        catalog.load(names: ["shared"], pairs: [(device: 9, name: "shared")])
        var a = DeviceStream(mark: 0, metrics: DeviceMetrics(device: 1, catalog: catalog))
        func send(_ stream: inout DeviceStream, _ seq: UInt64, _ names: [String]) -> String? {
            let bytes = frame(seq, names).frame.encoded()
            switch bytes.withUnsafeBytes({ stream.receive($0, nowMicros: 1) }) {
            case .accept: return nil
            case .reject(let rejected, _): return rejected.reason
            case .duplicate: return "duplicate"
            }
        }
        #expect(send(&a, 1, ["x", "y"]) == nil)
        #expect(send(&a, 2, ["shared"]) == nil)  // the third name of device 1, not new to the hub
        #expect(send(&a, 3, ["x", "z"])?.hasPrefix("too_many_metrics") == true)  // all or nothing
        #expect(send(&a, 4, ["x", "y", "shared"]) == nil)
        var b = DeviceStream(mark: 0, metrics: DeviceMetrics(device: 2, catalog: catalog))
        #expect(send(&b, 1, ["p", "q"]) == nil)  // total: shared, x, y, p, q
        #expect(send(&b, 2, ["r"])?.hasPrefix("too_many_metrics") == true)
        #expect(send(&b, 3, ["x"]) == nil)  // known to the hub: no new name in all
        #expect(catalog.count == 5)
        // A new connection of device 1 starts from what the catalog holds.
        var again = DeviceStream(mark: 4, metrics: DeviceMetrics(device: 1, catalog: catalog))
        #expect(send(&again, 5, ["z"])?.hasPrefix("too_many_metrics") == true)
    }

    final class Sub: Sendable {
        let id: Int
        init(_ id: Int) { self.id = id }
    }

    @Test("a removed subscription is released at once, though cached answers, current or behind, held it")
    func subscriptionIndexReleasesRemoved() {
        let index = SubscriptionIndex<Sub>()
        let everything = [DevicePattern("*")!]
        let other = Sub(2)
        weak var removed: Sub?
        do {
            let sub = Sub(1)
            removed = sub
            index.add(sub, patterns: everything)
            for device in ["a", "b", "c"] { #expect(index.matching(device).map(\.id) == [1]) }
            // "b" and "c" fall behind the change log's newest addition, "a" catches up.
            index.add(other, patterns: [DevicePattern("a")!])
            #expect(index.matching("a").count == 2)
            index.remove(sub, patterns: everything)
        }
        #expect(removed == nil, "a cached answer kept the removed subscription alive")
        #expect(index.matching("a").map(\.id) == [2])
        #expect(index.matching("b").isEmpty)
        #expect(index.matching("c").isEmpty)
    }

    @Test("matches computed on other threads while subscriptions come and go end exact, and keep no removed subscription")
    func subscriptionIndexUnderConcurrentChanges() {
        let index = SubscriptionIndex<Sub>()
        let devices = (0..<12).map { "dev-\($0)" }
        let choices = ["*", "dev-1*", "dev-*", "dev-3", "*5", "nothing"]
        let running = NIOLockedValueBox(true)
        let readers = DispatchGroup()
        for reader in 0..<3 {
            // Threads of their own: they spin, and must not starve the test's own task.
            readers.enter()
            Thread.detachNewThread { [readers] in
                defer { readers.leave() }
                var turn = reader
                while running.withLockedValue({ $0 }) {
                    _ = index.matching(devices[turn % devices.count])
                    turn += 1
                }
            }
        }
        var removed: [Weak] = []
        var live: [(Sub, [DevicePattern])] = []
        var generator = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let gone = Self.change(index, step: step, live: &live, keep: 3, using: &generator) {
                [DevicePattern(choices.randomElement(using: &$0)!)!]
            }
            if let gone { removed.append(Weak(gone)) }
        }
        running.withLockedValue { $0 = false }
        readers.wait()
        for device in devices {
            #expect(Set(index.matching(device).map(\.id)) == Self.expected(device, live), "\(device)")
        }
        #expect(removed.allSatisfy { $0.sub == nil }, "a removed subscription is still held")
    }

    struct Weak {
        weak var sub: Sub?
        init(_ sub: Sub) { self.sub = sub }
    }

    /// One random change: adds a subscription (always while fewer than `keep` are live) or
    /// removes a live one. - Returns: the removed subscription, if one was.
    static func change(
        _ index: SubscriptionIndex<Sub>, step: Int, live: inout [(Sub, [DevicePattern])], keep: Int,
        using generator: inout SystemRandomNumberGenerator,
        patterns: (inout SystemRandomNumberGenerator) -> [DevicePattern]
    ) -> Sub? {
        if live.count < keep || Bool.random(using: &generator) {
            let sub = Sub(step)
            let chosen = patterns(&generator)
            index.add(sub, patterns: chosen)
            live.append((sub, chosen))
            return nil
        }
        let (sub, chosen) = live.remove(at: Int.random(in: 0..<live.count, using: &generator))
        index.remove(sub, patterns: chosen)
        return sub
    }

    /// The ids of the live subscriptions matching `device`, by brute force.
    static func expected(_ device: String, _ live: [(Sub, [DevicePattern])]) -> Set<Int> {
        Set(live.filter { $0.1.contains { $0.matches(device) } }.map(\.0.id))
    }

    @Test("cached subscription matches follow every subscribe and unsubscribe exactly as a fresh match would")
    func subscriptionIndexStaysExact() {
        let index = SubscriptionIndex<Sub>()
        let devices = (0..<40).map { "dev-\($0 % 7)-\($0)" }
        var live: [(Sub, [DevicePattern])] = []
        var generator = SystemRandomNumberGenerator()
        let choices = ["*", "dev-1-*", "*-3", "dev-2-22", "dev-*-1*", "nothing", "dev-5-*", "*6*"]
        for step in 0..<3_000 {
            _ = Self.change(index, step: step, live: &live, keep: 1, using: &generator) { generator in
                (0..<Int.random(in: 1...3, using: &generator)).map { _ in DevicePattern(choices.randomElement(using: &generator)!)! }
            }
            // Some devices look up after every change, others rarely (they catch up, or fall
            // behind the log and are matched afresh).
            for device in devices where step % (device.hasSuffix("0") ? 1 : 97) == 0 {
                #expect(Set(index.matching(device).map(\.id)) == Self.expected(device, live), "\(device) at step \(step)")
            }
        }
    }
}
