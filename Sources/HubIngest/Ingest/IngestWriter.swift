import Dispatch
import HubProtocol
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import ServiceLifecycle

/// The writer threads, one per queue lane: each takes batches from its lane, commits each
/// with one transaction through its own sink (its own database connection), then acks
/// every connection once. A device is in one lane, so its frames commit and ack in order.
/// Each retries with backoff while the database is away, keeping the batch and holding the
/// acks, so nothing accepted is lost.
public final class IngestWriter: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var policy: FlushPolicy
        public var minBackoffNanos: UInt64 = 50_000_000
        public var maxBackoffNanos: UInt64 = 2_000_000_000
        /// On shutdown, how long the writer keeps retrying a failing database before it
        /// gives up on the unacked rest (devices resend it after they reconnect).
        public var shutdownGraceNanos: UInt64 = 10_000_000_000
        /// How long a lane's sink may hold the rollup aggregates of committed batches
        /// before it writes them (``IngestSink/flushRollups()``).
        public var rollupFlushNanos: UInt64 = 1_000_000_000
        /// How many (device, metric, minute) aggregates a lane's sink may hold before it
        /// writes them sooner; at about 150 bytes each, 100,000 are about 15 MB per lane.
        public var maxHeldRollups = 100_000

        public init(policy: FlushPolicy) { self.policy = policy }
    }

    private let queue: IngestQueue
    /// One per lane.
    private let sinks: [IngestSink]
    private let registry: DeviceRegistry
    private let configuration: Configuration
    private let logger: Logger
    private let metrics: IngestMetrics
    private let clock: any HubClock
    private let threads = NIOLockedValueBox<[ServiceThread]>([])
    private let startedNanos: UInt64
    private let stateLock = NSLock()
    private var stopDeadline: UInt64?
    /// Per lane.
    private var lastError: [String?]
    private var lastCommitNanos: [UInt64?]
    /// Rows committed per second, all lanes (`readingsPerSecond`).
    private var committedRows = RateWindow()

    /// - Parameter sinks: one per lane of `queue`.
    public init(
        queue: IngestQueue, sinks: [IngestSink], registry: DeviceRegistry, configuration: Configuration,
        logger: Logger, metrics: IngestMetrics = IngestMetrics(), clock: any HubClock = SystemClock()
    ) {
        precondition(sinks.count == queue.laneCount, "one sink per queue lane")
        self.queue = queue
        self.sinks = sinks
        lastError = Array(repeating: nil, count: sinks.count)
        lastCommitNanos = Array(repeating: nil, count: sinks.count)
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
        startedNanos = clock.uptimeNanos()
    }

    /// A writer of one lane (tests and tools).
    public convenience init(
        queue: IngestQueue, sink: IngestSink, registry: DeviceRegistry, configuration: Configuration,
        logger: Logger, metrics: IngestMetrics = IngestMetrics(), clock: any HubClock = SystemClock()
    ) {
        self.init(queue: queue, sinks: [sink], registry: registry, configuration: configuration, logger: logger,
                  metrics: metrics, clock: clock)
    }

    /// Starts the threads (once).
    public func start() {
        threads.withLockedValue { threads in
            guard threads.isEmpty else { return }
            threads = sinks.indices.map { lane in
                ServiceThread.start(name: "hub-ingest-writer-\(lane)") { [self] in write(lane: lane) }
            }
        }
    }

    /// Writes everything queued, then stops the threads; returns once they have. Later
    /// calls return at once.
    public func shutdown() async {
        stateLock.withLock { stopDeadline = stopDeadline ?? now() &+ configuration.shutdownGraceNanos }
        queue.close()
        for thread in threads.withLockedValue({ $0 }) { await thread.join() }
    }

    /// Whether a lane's readings have waited longer than `limitNanos` without any commit.
    public func isStalled(limitNanos: UInt64) -> Bool {
        let time = now()
        return sinks.indices.contains { lane in
            guard queue.depth(lane: lane) > 0 else { return false }
            let last = stateLock.withLock { lastCommitNanos[lane] } ?? startedNanos
            return time &- last > limitNanos
        }
    }

    /// Rows (readings and rejected frames) committed per second over the last 10 s.
    public var readingsPerSecond: Double {
        let now = now()
        return stateLock.withLock { committedRows.perSecond(atNanos: now) }
    }

    /// A lane's last write error, while the database is failing; `nil` when writes succeed.
    public var failure: String? { stateLock.withLock { lastError.lazy.compactMap { $0 }.first } }

    private func now() -> UInt64 { clock.uptimeNanos() }

    private func write(lane: Int) {
        let sink = sinks[lane]
        /// When the sink's held rollups are due to be written; `nil` while it holds none.
        var flushDue: UInt64?
        while let bursts = queue.take(lane: lane, policy: configuration.policy, clock: clock, idleUntil: flushDue) {
            if !bursts.isEmpty {
                if let fenced = commit(bursts, lane: lane) { acknowledge(bursts, fenced: fenced) }
                queue.release(lane: lane, rows: bursts.reduce(0) { $0 + $1.rowCount }, bursts: bursts.count)
            }
            let held = sink.heldRollups
            if held == 0 {
                flushDue = nil
            } else if flushDue == nil {
                flushDue = now() &+ configuration.rollupFlushNanos
            }
            if let due = flushDue, now() >= due || held >= configuration.maxHeldRollups {
                flushRollups(sink)
                flushDue = nil
            }
        }
        flushRollups(sink)
    }

    /// Writes a sink's held rollup aggregates. A failure is logged and counted; the sink
    /// then drops them, and the fold rebuilds them from the committed readings.
    private func flushRollups(_ sink: IngestSink) {
        guard sink.heldRollups > 0 else { return }
        do {
            try sink.flushRollups()
        } catch {
            metrics.databaseErrors.increment()
            logger.warning("writing held rollup deltas failed; the fold rebuilds them from the readings",
                           metadata: ["error": "\(error)"])
        }
    }

    /// Writes until it commits. - Returns: the fences that failed (bursts left out because
    /// another node owns their device now); `nil` only if shutdown gave up on the batch.
    private func commit(_ bursts: [IngestBurst], lane: Int) -> Set<DeviceFence>? {
        let sink = sinks[lane]
        var pending = bursts
        var mustRecheck = false
        var attempt = 0
        var lastLog: UInt64 = 0
        while true {
            do {
                if mustRecheck {
                    let keys = Array(Set(pending.map(\.device.key)))
                    pending = Self.dropCommitted(pending, marks: try sink.committedMarks(deviceKeys: keys))
                    mustRecheck = false
                }
                let started = now()
                let fenced: Set<DeviceFence>
                do {
                    fenced = try sink.write(pending)
                } catch StorageFailure.refused(let why) {
                    // The database refused the batch for what it holds, not for being away:
                    // find the frames it refuses on their own, and quarantine just those.
                    logger.error("the database refused an ingest batch; isolating the frames it refuses", metadata: ["error": "\(why)"])
                    fenced = try writeIsolating(pending, sink: sink)
                }
                metrics.commitSeconds.recordNanoseconds(Int64(now() &- started))
                let rows = pending.reduce(0) { $0 + $1.rowCount }
                metrics.batchRows.record(rows)
                if attempt > 0 {
                    logger.info("database writes recovered", metadata: ["attempts": "\(attempt)"])
                }
                let committedAt = now()
                stateLock.withLock {
                    lastError[lane] = nil
                    lastCommitNanos[lane] = committedAt
                    committedRows.add(rows, atNanos: committedAt)
                }
                return fenced
            } catch {
                mustRecheck = true
                attempt += 1
                metrics.databaseErrors.increment()
                let description = String(describing: error)
                stateLock.withLock { lastError[lane] = description }
                let time = now()
                if attempt == 1 || time &- lastLog > 5_000_000_000 {
                    logger.error("database write failed; holding the batch and retrying",
                                 metadata: ["error": "\(description)", "attempt": "\(attempt)"])
                    lastLog = time
                }
                if let deadline = stateLock.withLock({ stopDeadline }), time >= deadline {
                    logger.error("shutting down with an unwritten batch; devices will resend it",
                                 metadata: ["rows": "\(pending.reduce(0) { $0 + $1.rowCount })"])
                    return nil
                }
                let backoff = min(configuration.maxBackoffNanos, configuration.minBackoffNanos << min(attempt - 1, 16))
                Thread.sleep(forTimeInterval: Double(backoff) / 1e9)
            }
        }
    }

    /// Writes bursts whose batch the database refused for its content: in halves, then one
    /// burst's frames one at a time; a frame refused on its own is stored as a rejected
    /// frame instead (reason `storage_refused`), which advances the mark like any rejection,
    /// and its device is told. Every other frame is stored as it came.
    private func writeIsolating(_ bursts: [IngestBurst], sink: IngestSink) throws -> Set<DeviceFence> {
        do {
            return try sink.write(bursts)
        } catch StorageFailure.refused(let why) {
            if bursts.count > 1 {
                let middle = bursts.count / 2
                return try writeIsolating(Array(bursts[..<middle]), sink: sink)
                    .union(writeIsolating(Array(bursts[middle...]), sink: sink))
            }
            guard let burst = bursts.first, !burst.frames.isEmpty else { throw StorageFailure.refused(why) }
            if burst.frames.count > 1 {
                var first = burst
                first.frames = [burst.frames[0]]
                var parts = [first]
                for frame in burst.frames.dropFirst() {
                    var part = IngestBurst(device: burst.device, connection: burst.connection, session: burst.session)
                    part.frames = [frame]
                    parts.append(part)
                }
                var fenced: Set<DeviceFence> = []
                for part in parts { fenced.formUnion(try writeIsolating([part], sink: sink)) }
                return fenced
            }
            let frame = burst.frames[0]
            var quarantined = burst
            quarantined.frames = []
            let reason = "storage_refused: \(why)"
            quarantined.rejections.append(RejectedFrame(
                seq: frame.frame.seq, reason: reason, payload: frame.frame.encoded(), receivedAtMicros: frame.receivedAtMicros))
            let fenced = try sink.write([quarantined])
            guard fenced.isEmpty else { return fenced }
            metrics.storageRefused.increment()
            burst.connection.send(text: Rejected(seq: frame.frame.seq, reason: reason).json)
            return []
        }
    }

    /// Removes what a failed attempt had in fact committed (its seq is at or below the mark).
    static func dropCommitted(_ bursts: [IngestBurst], marks: [Int32: UInt64]) -> [IngestBurst] {
        bursts.map { burst in
            guard let mark = marks[burst.device.key] else { return burst }
            var kept = burst
            kept.frames.removeAll { $0.frame.seq <= mark }
            kept.rejections.removeAll { ($0.seq ?? UInt64.max) <= mark }
            return kept
        }
    }

    /// Acks every connection once; a fenced connection gets no ack and is closed (the
    /// device resends to its new owner).
    private func acknowledge(_ bursts: [IngestBurst], fenced: Set<DeviceFence>) {
        var marks: [String: UInt64] = [:]
        var perConnection: [ObjectIdentifier: (connection: any DeviceConnection, seq: UInt64?, items: Int)] = [:]
        var closing: [ObjectIdentifier: any DeviceConnection] = [:]
        for burst in bursts {
            let isFenced = !fenced.isEmpty && fenced.contains(burst.fence)
            if isFenced {
                closing[ObjectIdentifier(burst.connection)] = burst.connection
                metrics.framesFenced.increment(by: Int64(burst.frames.count))
            }
            let seq = isFenced ? nil : burst.highestSeq
            if let seq { marks[burst.device.id] = max(marks[burst.device.id] ?? 0, seq) }
            let id = ObjectIdentifier(burst.connection)
            var entry = perConnection[id] ?? (burst.connection, nil, 0)
            if let seq { entry.seq = max(entry.seq ?? 0, seq) }
            entry.items += 1
            perConnection[id] = entry
        }
        registry.raiseMarks(marks)
        for entry in perConnection.values {
            entry.connection.committed(upTo: entry.seq, items: entry.items)
        }
        if !closing.isEmpty {
            logger.warning("fenced: another node owns these devices now; their connections close unacked",
                           metadata: ["connections": "\(closing.count)"])
        }
        for connection in closing.values { connection.close(.replaced) }
    }
}

extension IngestWriter: Service {
    /// Writes until the graceful shutdown, then writes what is queued and stops.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }
}
