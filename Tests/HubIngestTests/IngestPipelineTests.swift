import Foundation
import HubIngest
import HubProtocol
import HubTestSupport
import Logging
import NIOConcurrencyHelpers
import Testing

/// A sink that records writes and can be told to fail, standing in for PostgreSQL.
final class FakeSink: IngestSink, @unchecked Sendable {
    private let lock = NSLock()
    private var failuresLeft = 0
    private var commitThenFail = false
    private(set) var written: [UInt64] = []
    private var marks: [Int32: UInt64] = [:]
    /// When set, the session that owns each device: other sessions' bursts are fenced.
    private var owners: [Int32: Int64]?

    func own(_ owners: [Int32: Int64]) { lock.withLock { self.owners = owners } }

    func failNext(_ count: Int, afterCommitting: Bool = false) {
        lock.withLock {
            failuresLeft = count
            commitThenFail = afterCommitting
        }
    }

    var seqs: [UInt64] { lock.withLock { written } }

    func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence> {
        try lock.withLock {
            if failuresLeft > 0 {
                failuresLeft -= 1
                if commitThenFail { commit(bursts) }
                throw FakeError()
            }
            let fenced = Set(bursts.filter { burst in owners.map { $0[burst.device.key] != burst.session } ?? false }.map(\.fence))
            commit(bursts.filter { !fenced.contains($0.fence) })
            return fenced
        }
    }

    private func commit(_ bursts: [IngestBurst]) {
        for burst in bursts {
            written += burst.frames.map(\.frame.seq)
            if let seq = burst.highestSeq { marks[burst.device.key] = max(marks[burst.device.key] ?? 0, seq) }
        }
    }

    func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64] {
        lock.withLock { marks.filter { deviceKeys.contains($0.key) } }
    }

    struct FakeError: Error {}
}

/// A sink whose writes wait until it is opened.
final class GatedSink: IngestSink, @unchecked Sendable {
    private let inner = FakeSink()
    private let opened = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var inside = false

    var entered: Bool { lock.withLock { inside } }
    func open() { opened.signal() }

    func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence> {
        lock.withLock { inside = true }
        opened.wait()
        opened.signal()
        return try inner.write(bursts)
    }

    func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64] { try inner.committedMarks(deviceKeys: deviceKeys) }
}

/// A connection that records what the writer tells it, and what it is sent.
final class RecordingConnection: DeviceConnection, @unchecked Sendable {
    let connectionID = "test"
    private let lock = NSLock()
    private(set) var acks: [UInt64] = []
    private(set) var items = 0
    private(set) var texts: [String] = []
    private(set) var closes: [CloseReason] = []

    func committed(upTo seq: UInt64?, items: Int) {
        lock.withLock {
            if let seq { acks.append(seq) }
            self.items += items
        }
    }

    func replace(whenDrained drained: @escaping @Sendable () -> Void) { drained() }
    func close(_ reason: CloseReason) { lock.withLock { closes.append(reason) } }
    func send(text: String) { lock.withLock { texts.append(text) } }

    var snapshot: (acks: [UInt64], items: Int, texts: [String]) { lock.withLock { (acks, items, texts) } }
    var closeReasons: [CloseReason] { lock.withLock { closes } }
}

@Suite("Ingest pipeline with a fake sink")
struct IngestPipelineTests {
    let device = DeviceRecordRef(key: 1, id: "d1")

    func burst(
        _ seqs: ClosedRange<UInt64>, connection: RecordingConnection, device: DeviceRecordRef? = nil, session: Int64 = 0
    ) -> IngestBurst {
        var burst = IngestBurst(device: device ?? self.device, connection: connection, session: session)
        burst.frames = seqs.map { seq in
            AcceptedFrame(
                frame: TelemetryFrame(seq: seq, baseTime: 1, readings: [Reading(name: "t", value: .i64(Int64(seq)))]),
                receivedAtMicros: 1)
        }
        return burst
    }

    func makeWriter(_ sink: FakeSink, queue: IngestQueue, registry: DeviceRegistry, maxRows: Int = 100) -> IngestWriter {
        var configuration = IngestWriter.Configuration(policy: FlushPolicy(maxRows: maxRows, maxDelayNanos: 1_000_000))
        configuration.minBackoffNanos = 1_000_000
        return IngestWriter(queue: queue, sink: sink, registry: registry, configuration: configuration, logger: Logger(label: "test"))
    }

    @Test("the writer commits, raises the mark, and acks the connection once per batch")
    func commitsAndAcks() async throws {
        let sink = FakeSink()
        let queue = IngestQueue(capacityRows: 1000)
        let registry = DeviceRegistry()
        registry.load([DeviceRecord(key: 1, id: "d1", tokenHash: nil)])
        let connection = RecordingConnection()
        let writer = makeWriter(sink, queue: queue, registry: registry)
        writer.start()
        queue.push(burst(1...10, connection: connection), nowNanos: 0)
        await writer.shutdown()
        #expect(sink.seqs == Array(1...10))
        #expect(connection.snapshot.acks == [10])
        #expect(registry.record(id: "d1")?.mark == 10)
        #expect(queue.depth == 0)
    }

    @Test("a fenced burst is not acked and its connection closes with 4001; the other devices in the batch commit")
    func fencedBurst() async throws {
        let sink = FakeSink()
        sink.own([1: 7, 2: 3])
        let queue = IngestQueue(capacityRows: 1000)
        let registry = DeviceRegistry()
        registry.load([DeviceRecord(key: 1, id: "d1", tokenHash: nil), DeviceRecord(key: 2, id: "d2", tokenHash: nil)])
        let (stale, owner) = (RecordingConnection(), RecordingConnection())
        let writer = makeWriter(sink, queue: queue, registry: registry)
        queue.push(burst(1...5, connection: stale, session: 6), nowNanos: 0)
        queue.push(burst(11...12, connection: owner, device: DeviceRecordRef(key: 2, id: "d2"), session: 3), nowNanos: 0)
        writer.start()
        await writer.shutdown()
        #expect(sink.seqs == [11, 12])
        #expect(stale.snapshot.acks.isEmpty)
        #expect(stale.snapshot.items == 1)
        #expect(stale.closeReasons == [.replaced])
        #expect(owner.snapshot.acks == [12])
        #expect(owner.closeReasons.isEmpty)
        #expect(registry.record(id: "d1")?.mark == 0)
        #expect(registry.record(id: "d2")?.mark == 12)
    }

    @Test("on a test clock, a batch below the size bound is written when its delay has passed, not before")
    func flushesOnTheClock() async throws {
        let (sink, clock, queue, connection) = (FakeSink(), ManualClock(), IngestQueue(capacityRows: 1000), RecordingConnection())
        let writer = IngestWriter(
            queue: queue, sink: sink, registry: DeviceRegistry(),
            configuration: .init(policy: FlushPolicy(maxRows: 100, maxDelayNanos: 50_000_000)), logger: Logger(label: "test"),
            clock: clock)
        writer.start()
        queue.push(burst(1...3, connection: connection), nowNanos: clock.uptimeNanos())
        try await until("the writer waits on the clock") { clock.waiters == 1 }
        clock.advance(by: .milliseconds(49))
        try await Task.sleep(for: .milliseconds(50))
        #expect(sink.seqs.isEmpty)
        #expect(clock.waiters == 1)
        clock.advance(by: .milliseconds(1))
        try await until("the batch is written") { connection.snapshot.acks == [3] }
        #expect(sink.seqs == [1, 2, 3])
        await writer.shutdown()
    }

    @Test("a failing sink is retried with the batch kept and acks held until it commits")
    func retriesWithoutLoss() async throws {
        let sink = FakeSink()
        sink.failNext(3)
        let queue = IngestQueue(capacityRows: 1000)
        let registry = DeviceRegistry()
        let connection = RecordingConnection()
        let writer = makeWriter(sink, queue: queue, registry: registry)
        writer.start()
        queue.push(burst(1...5, connection: connection), nowNanos: 0)
        await writer.shutdown()
        #expect(sink.seqs == Array(1...5))
        #expect(connection.snapshot.acks == [5])
    }

    @Test("a write that committed before failing is not written twice")
    func unknownOutcomeIsNotDuplicated() async throws {
        let sink = FakeSink()
        sink.failNext(1, afterCommitting: true)
        let queue = IngestQueue(capacityRows: 1000)
        let connection = RecordingConnection()
        let writer = makeWriter(sink, queue: queue, registry: DeviceRegistry())
        writer.start()
        queue.push(burst(1...5, connection: connection), nowNanos: 0)
        await writer.shutdown()
        #expect(sink.seqs == Array(1...5))
        #expect(connection.snapshot.acks == [5])
    }

    @Test("over its bound the queue asks readers to pause, and calls them back once drained")
    func backpressure() {
        let queue = IngestQueue(capacityRows: 10, resumeBelowRows: 5)
        let connection = RecordingConnection()
        #expect(queue.push(burst(1...6, connection: connection), nowNanos: 0))
        #expect(!queue.push(burst(7...12, connection: connection), nowNanos: 0))
        let resumed = NIOLockedValueBox(false)
        queue.whenSpaceAvailable { resumed.withLockedValue { $0 = true } }
        #expect(!resumed.withLockedValue { $0 })
        #expect(queue.depth == 12)
    }

    @Test("the flush policy flushes on size, on age, and everything when closing")
    func flushPolicy() {
        let policy = FlushPolicy(maxRows: 100, maxDelayNanos: 20)
        #expect(policy.decide(queuedRows: 0, queuedBursts: 0, oldestNanos: nil, nowNanos: 5, closing: false) == .wait(untilNanos: nil))
        #expect(policy.decide(queuedRows: 100, queuedBursts: 1, oldestNanos: 0, nowNanos: 1, closing: false) == .flush)
        #expect(policy.decide(queuedRows: 5, queuedBursts: 1, oldestNanos: 10, nowNanos: 15, closing: false) == .wait(untilNanos: 30))
        #expect(policy.decide(queuedRows: 5, queuedBursts: 1, oldestNanos: 10, nowNanos: 30, closing: false) == .flush)
        #expect(policy.decide(queuedRows: 5, queuedBursts: 1, oldestNanos: 10, nowNanos: 11, closing: true) == .flush)
        #expect(policy.decide(queuedRows: 0, queuedBursts: 0, oldestNanos: nil, nowNanos: 11, closing: true) == .stop)
    }

    @Test("with a delay of 0 the writer flushes whatever is queued as soon as it asks (group commit)")
    func groupCommitPolicy() {
        let policy = FlushPolicy(maxRows: 100, maxDelayNanos: 0)
        #expect(policy.decide(queuedRows: 1, queuedBursts: 1, oldestNanos: 10, nowNanos: 10, closing: false) == .flush)
        #expect(policy.decide(queuedRows: 0, queuedBursts: 0, oldestNanos: nil, nowNanos: 10, closing: false) == .wait(untilNanos: nil))
    }

    @Test("with two lanes each device is written by one writer, in order, and the other lane's devices never reach it")
    func lanesKeepDevicesApart() async throws {
        let sinks = [FakeSink(), FakeSink()]
        let queue = IngestQueue(capacityRows: 10_000, lanes: 2)
        let registry = DeviceRegistry()
        let devices = (1...6).map { DeviceRecordRef(key: Int32($0), id: "d\($0)") }
        registry.load(devices.map { DeviceRecord(key: $0.key, id: $0.id, tokenHash: nil) })
        let connections = devices.map { _ in RecordingConnection() }
        let writer = IngestWriter(
            queue: queue, sinks: sinks, registry: registry,
            configuration: .init(policy: FlushPolicy(maxRows: 7, maxDelayNanos: 0)), logger: Logger(label: "test"))
        writer.start()
        for round in 0..<20 {
            for (index, device) in devices.enumerated() {
                let base = UInt64(device.key) * 1000 + UInt64(round) * 3
                queue.push(burst(base + 1...base + 3, connection: connections[index], device: device), nowNanos: 0)
            }
        }
        await writer.shutdown()
        for (lane, sink) in sinks.enumerated() {
            let byDevice = Dictionary(grouping: sink.seqs) { $0 / 1000 }
            #expect(Set(byDevice.keys) == Set(devices.filter { queue.lane(ofDeviceKey: $0.key) == lane }.map { UInt64($0.key) }))
            for (key, seqs) in byDevice { #expect(seqs == Array(key * 1000 + 1...key * 1000 + 60)) }
        }
        for (index, device) in devices.enumerated() {
            #expect(connections[index].snapshot.acks.last == UInt64(device.key) * 1000 + 60)
            #expect(connections[index].snapshot.acks == connections[index].snapshot.acks.sorted())
            #expect(registry.record(id: device.id)?.mark == UInt64(device.key) * 1000 + 60)
        }
        #expect(queue.depth == 0)
    }

    @Test("a barrier waits for every lane: one lane's commit does not release it while the other's is held")
    func barrierWaitsForEveryLane() async throws {
        let gate = GatedSink()
        let queue = IngestQueue(capacityRows: 10_000, lanes: 2)
        let writer = IngestWriter(
            queue: queue, sinks: [FakeSink(), gate], registry: DeviceRegistry(),
            configuration: .init(policy: FlushPolicy(maxRows: 100, maxDelayNanos: 0)), logger: Logger(label: "test"))
        writer.start()
        let (even, odd) = (RecordingConnection(), RecordingConnection())
        queue.push(burst(1...3, connection: odd, device: DeviceRecordRef(key: 1, id: "d1")), nowNanos: 0)
        queue.push(burst(1...3, connection: even, device: DeviceRecordRef(key: 2, id: "d2")), nowNanos: 0)
        let written = NIOLockedValueBox(false)
        queue.whenWritten { written.withLockedValue { $0 = true } }
        try await until("the free lane commits") { even.snapshot.acks == [3] }
        try await until("the held lane is inside its write") { gate.entered }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!written.withLockedValue { $0 })
        #expect(odd.snapshot.acks.isEmpty)
        gate.open()
        try await until("the barrier passes once both lanes have written") { written.withLockedValue { $0 } }
        #expect(odd.snapshot.acks == [3])
        await writer.shutdown()
    }

    @Test("one lane failing while the other commits: readiness sees the failure and the stall")
    func oneLaneFailing() async throws {
        let (clock, failing) = (ManualClock(), FakeSink())
        failing.failNext(Int.max)
        let queue = IngestQueue(capacityRows: 10_000, lanes: 2)
        var configuration = IngestWriter.Configuration(policy: FlushPolicy(maxRows: 100, maxDelayNanos: 0))
        configuration.minBackoffNanos = 1_000_000
        configuration.maxBackoffNanos = 1_000_000
        configuration.shutdownGraceNanos = 0
        let writer = IngestWriter(
            queue: queue, sinks: [FakeSink(), failing], registry: DeviceRegistry(), configuration: configuration,
            logger: Logger(label: "test"), clock: clock)
        writer.start()
        let (even, odd) = (RecordingConnection(), RecordingConnection())
        queue.push(burst(1...3, connection: odd, device: DeviceRecordRef(key: 1, id: "d1")), nowNanos: clock.uptimeNanos())
        queue.push(burst(1...3, connection: even, device: DeviceRecordRef(key: 2, id: "d2")), nowNanos: clock.uptimeNanos())
        try await until("the healthy lane commits") { even.snapshot.acks == [3] }
        try await until("the failure is reported") { writer.failure != nil }
        #expect(!writer.isStalled(limitNanos: 10_000_000_000))
        clock.advance(by: .seconds(11))
        #expect(writer.isStalled(limitNanos: 10_000_000_000))
        #expect(odd.snapshot.acks.isEmpty)
        await writer.shutdown()
        #expect(odd.snapshot.acks.isEmpty)
    }

    @Test("tokens are 43 URL-safe characters and match only their own hash")
    func tokens() {
        let token = DeviceToken.generate()
        #expect(token.count == 43)
        #expect(token.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        let hash = DeviceToken.hash(token)
        #expect(DeviceToken.matches(token, hash: hash))
        #expect(!DeviceToken.matches(DeviceToken.generate(), hash: hash))
    }
}
