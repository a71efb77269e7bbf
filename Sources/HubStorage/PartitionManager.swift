import Foundation
import HubIngest
import Logging
import Metrics
import Postgres
import ServiceLifecycle

/// Keeps `reading` partitioned by time and within its retention: creates partitions ahead
/// of time, moves readings that landed in `reading_default` (late or far-future data, or
/// rows of a database made before partitioning) into partitions of their own, and drops
/// whole partitions past the retention window. Also expires old rejected frames and final
/// commands. Runs on its own thread and connection, at start and then every `interval`.
public final class PartitionManager: @unchecked Sendable {
    public struct Settings: Sendable {
        /// The time one partition covers (default a day).
        public var spanSeconds: Int64 = 86_400
        /// Partitions kept ready beyond the current one.
        public var ahead = 2
        /// Readings that landed in the default partition get a partition of their own only
        /// if their span starts at most this long before now (or is one of the `ahead`
        /// spans). Older and far-future readings stay in the default partition, so no
        /// spread of reading times makes partitions without bound (contract section 7).
        public var moveWindowSeconds: Int64 = 31 * 86_400
        /// Drop readings older than this many days; `nil` keeps everything.
        public var retentionDays: Int?
        /// Rollups older than this many days are deleted; `nil` keeps them. They may
        /// outlive the readings they summarise.
        public var rollupRetentionDays: Int?
        /// Rejected frames are deleted after this many days.
        public var rejectedRetentionDays = 30
        /// Final commands are deleted this many days after their last change.
        public var commandRetentionDays = 30
        public var interval: Duration = .seconds(60)
        /// The longest a retention drop may wait for its lock before trying again next time.
        public var lockTimeoutMilliseconds = 2_000

        public init() {}
    }

    /// What retention did: counted for metrics and for the load tool's report.
    public struct Report: Sendable, Equatable {
        public var partitionsCreated = 0
        public var readingsMoved = 0
        public var partitionsDropped = 0
        public var readingsDropped = 0
        public var rejectedDeleted = 0
        public var commandsDeleted = 0
        public var rollupsDeleted = 0
        /// Sparse hours whose minute rows were built before their readings could go.
        public var hoursGivenMinutes = 0
        /// The longest a drop held its lock (milliseconds).
        public var longestDropMillis = 0.0
        /// Another hub on the same database was doing a round, so this one did nothing.
        public var heldElsewhere = false
    }

    private let settings: Settings
    private let logger: Logger
    private let condition = NSCondition()
    private var total = Report()
    private var worker: PeriodicWorker!
    private let dropped = Counter(label: "hub_retention_readings_dropped_total")
    private let dropSeconds = Timer(label: "hub_retention_drop_seconds")

    private let clock: any HubClock

    public init(url: String, settings: Settings, clock: any HubClock = SystemClock(), logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.clock = clock
        worker = PeriodicWorker(
            name: "hub-partitions", url: url, interval: settings.interval,
            round: { [weak self] connection in
                guard let self else { return false }
                try self.runOnce(on: connection, nowSeconds: self.clock.wallMicros() / 1_000_000)
                return false
            },
            failed: { error, _ in logger.warning("partition maintenance failed; trying again later", metadata: ["error": "\(error)"]) },
            clock: clock)
    }

    /// Everything done so far.
    public var report: Report { condition.withLock { total } }

    public func start() {
        worker.start()
    }

    /// Stops after the round in progress; returns once its thread has.
    public func stop() async {
        await worker.stop()
    }

    /// One round: partitions ahead, default rows moved, retention. Each step stands alone:
    /// one the database refuses (for what it holds, not for being away) is logged and the
    /// next steps still run, so no stored value can stop the upkeep.
    ///
    /// One hub at a time does a round (an advisory lock): while another hub on the same
    /// database is in one, this one skips its turn rather than wait behind it, since the
    /// other does the same work. A stopped process holding the lock only holds off upkeep,
    /// never a start: frames into a missing partition land in the default one.
    /// - Returns: what it did (`heldElsewhere` if it skipped).
    @discardableResult
    public func runOnce(
        on connection: PostgresConnection, nowSeconds: Int64, logger: Logger? = nil
    ) throws -> Report {
        guard try AdvisoryLock.tryLock(AdvisoryLock.partitions, on: connection) else { return Report(heldElsewhere: true) }
        defer { AdvisoryLock.unlock(AdvisoryLock.partitions, on: connection) }
        return try upkeep(on: connection, nowSeconds: nowSeconds, logger: logger)
    }

    private func upkeep(on connection: PostgresConnection, nowSeconds: Int64, logger: Logger?) throws -> Report {
        var report = Report()
        let span = settings.spanSeconds
        let current = nowSeconds / span * span
        let logger = logger ?? self.logger
        func step(_ name: String, _ body: () throws -> Void) throws {
            do {
                try body()
            } catch let error as PostgresError where !error.isTransient && connection.isConnected {
                logger.error("partition maintenance step failed; the others go on", metadata: ["step": "\(name)", "error": "\(error)"])
            }
        }
        // Retention first, so old readings waiting in the default partition go rather than
        // get a partition of their own.
        if let days = settings.retentionDays {
            try step("retention") { try applyRetention(cutoff: nowSeconds - Int64(days) * 86_400, on: connection, report: &report) }
        }
        try step("partitions ahead") {
            for index in -1...settings.ahead {
                try ensurePartition(from: current + Int64(index) * span, on: connection, report: &report)
            }
        }
        // Readings waiting in the default partition, a few spans per round, within the window.
        try step("default partition") {
            let waiting = try connection.query(
                """
                SELECT DISTINCT (floor(extract(epoch FROM ts) / $1))::bigint FROM reading_default
                WHERE ts >= 'epoch'::timestamptz + $2::bigint * interval '1 second'
                    AND ts < 'epoch'::timestamptz + $3::bigint * interval '1 second'
                LIMIT 64
                """, [String(span), String(current - settings.moveWindowSeconds), String(current + Int64(settings.ahead + 1) * span)])
            for row in waiting.rows {
                guard let bucket = row[0].flatMap({ Int64($0) }) else { continue }
                try ensurePartition(from: bucket * span, on: connection, report: &report)
            }
        }
        if let days = settings.rollupRetentionDays {
            try step("rollup retention") {
                for table in ["rollup_1m", "rollup_1h"] {
                    report.rollupsDeleted += try connection.query(
                        "DELETE FROM \(table) WHERE bucket < now() - $1::int * interval '1 day'", [String(days)]).affectedRows
                }
            }
        }
        try step("rejected frames retention") {
            report.rejectedDeleted = try connection.query(
                "DELETE FROM rejected_frames WHERE received_at < now() - $1::int * interval '1 day'", [String(settings.rejectedRetentionDays)]
            ).affectedRows
        }
        try step("command retention") {
            report.commandsDeleted = try connection.query(
                """
                DELETE FROM commands WHERE status NOT IN ('queued', 'sent', 'delivered')
                AND updated_at < now() - $1::int * interval '1 day'
                """, [String(settings.commandRetentionDays)]
            ).affectedRows
        }
        condition.withLock {
            total.partitionsCreated += report.partitionsCreated
            total.readingsMoved += report.readingsMoved
            total.partitionsDropped += report.partitionsDropped
            total.readingsDropped += report.readingsDropped
            total.rejectedDeleted += report.rejectedDeleted
            total.commandsDeleted += report.commandsDeleted
            total.rollupsDeleted += report.rollupsDeleted
            total.hoursGivenMinutes += report.hoursGivenMinutes
            total.longestDropMillis = max(total.longestDropMillis, report.longestDropMillis)
        }
        return report
    }

    /// Creates the partitions covering [from, to) (Unix seconds), for example before loading
    /// history, so the readings go straight into them. - Returns: how many were created.
    @discardableResult
    public func ensurePartitions(fromSeconds from: Int64, toSeconds to: Int64, on connection: PostgresConnection) throws -> Int {
        var report = Report()
        var start = from / settings.spanSeconds * settings.spanSeconds
        while start < to {
            try ensurePartition(from: start, on: connection, report: &report)
            start += settings.spanSeconds
        }
        return report.partitionsCreated
    }

    /// The partition for [start, start + span): created empty, or built from the default
    /// partition's rows in that range and attached (its CHECK constraint spares the scan).
    private func ensurePartition(from start: Int64, on connection: PostgresConnection, report: inout Report) throws {
        let name = Self.partitionName(start)
        let (lower, upper) = (Self.literal(start), Self.literal(start + settings.spanSeconds))
        guard Self.isTrue(try connection.query("SELECT to_regclass($1) IS NULL", [name])) else { return }
        let waiting = Self.isTrue(try connection.query(
            "SELECT EXISTS (SELECT 1 FROM reading_default WHERE ts >= $1 AND ts < $2)", [lower, upper]))
        if !waiting {
            try connection.execute("CREATE TABLE IF NOT EXISTS \(name) PARTITION OF reading FOR VALUES FROM ('\(lower)') TO ('\(upper)')")
            report.partitionsCreated += 1
            return
        }
        let moved = try connection.transaction { () throws(PostgresError) -> Int in
            try connection.execute("CREATE TABLE \(name) (LIKE reading INCLUDING DEFAULTS)")
            try connection.execute("ALTER TABLE \(name) ADD CONSTRAINT \(name)_range CHECK (ts >= '\(lower)' AND ts < '\(upper)')")
            let moved = try connection.query(
                """
                WITH moved AS (DELETE FROM reading_default WHERE ts >= $1 AND ts < $2 RETURNING *)
                INSERT INTO \(name) SELECT * FROM moved
                """, [lower, upper]
            ).affectedRows
            try connection.execute("ALTER TABLE reading ATTACH PARTITION \(name) FOR VALUES FROM ('\(lower)') TO ('\(upper)')")
            try connection.execute("ALTER TABLE \(name) DROP CONSTRAINT \(name)_range")
            return moved
        }
        report.partitionsCreated += 1
        report.readingsMoved += moved
        logger.info("moved readings from the default partition", metadata: ["partition": "\(name)", "readings": "\(moved)"])
    }

    /// Drops partitions that end at or before `cutoff`, and deletes older default rows.
    private func applyRetention(cutoff: Int64, on connection: PostgresConnection, report: inout Report) throws {
        // Minute buckets of sparse hours come from readings: build their minute rows first.
        report.hoursGivenMinutes = try RollupFolder.keepMinutes(before: Self.literal(cutoff), on: connection)
        let partitions = try connection.query(
            """
            SELECT c.relname, extract(epoch FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz)::bigint
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'reading'::regclass AND c.relname <> 'reading_default'
            """)
        for row in partitions.rows {
            guard let name = row[0], let end = row[1].flatMap({ Int64($0) }), end <= cutoff else { continue }
            let rows = Int(try connection.query("SELECT count(*) FROM \(name)").rows.first?.first??.description ?? "0") ?? 0
            let started = clock.uptimeNanos()
            try connection.transaction { () throws(PostgresError) in
                try connection.execute("SET LOCAL lock_timeout = '\(settings.lockTimeoutMilliseconds)ms'")
                try connection.execute("DROP TABLE \(name)")
            }
            let held = clock.uptimeNanos() &- started
            let millis = Double(held) / 1e6
            dropSeconds.recordNanoseconds(Int64(held))
            report.partitionsDropped += 1
            report.readingsDropped += rows
            report.longestDropMillis = max(report.longestDropMillis, millis)
            dropped.increment(by: Int64(rows))
            logger.notice("retention dropped a partition", metadata: ["partition": "\(name)", "readings": "\(rows)", "millis": "\(String(format: "%.1f", millis))"])
        }
        let old = try connection.query("DELETE FROM reading_default WHERE ts < $1", [Self.literal(cutoff)]).affectedRows
        if old > 0 {
            report.readingsDropped += old
            dropped.increment(by: Int64(old))
            logger.notice("retention deleted old readings from the default partition", metadata: ["readings": "\(old)"])
        }
    }

    private static func isTrue(_ result: PostgresResult) -> Bool {
        (result.rows.first?.first ?? nil) == "t"
    }

    /// `reading_p2026113000`: the partition's start, UTC, to the hour.
    static func partitionName(_ start: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour], from: Date(timeIntervalSince1970: TimeInterval(start)))
        return String(format: "reading_p%04d%02d%02d%02d", parts.year!, parts.month!, parts.day!, parts.hour!)
    }

    /// A `timestamptz` literal for Unix seconds.
    static func literal(_ seconds: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).ISO8601Format()
    }
}

extension PartitionManager: Service {
    /// Works until the graceful shutdown, then stops after the round in progress.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await stop()
    }
}
