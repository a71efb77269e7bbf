import Foundation
import HubIngest
import Logging
import Postgres
import ServiceLifecycle

/// Folds `rollup_delta` into `rollup_1m` and `rollup_1h`, every second, on its own thread
/// and connection: one statement takes the deltas out, merges them per hour and per minute,
/// and upserts both rollups, so a query (which reads rollups, deltas and readings in one
/// snapshot) sees every committed reading exactly once.
///
/// An hour of a (device, metric) keeps minute rows only once it holds more than
/// ``minuteRowsAbove`` readings (`rollup_1h.minutes` says which); a sparser hour keeps its
/// minutes as compact arrays in its hour row instead (``minuteArrays``). An hour that
/// grows past the threshold gets its minute rows built from its readings, and
/// before retention drops readings, ``keepMinutes(before:on:)`` builds them for every
/// sparse hour older than the cut (docs/storage.md).
public final class RollupFolder: @unchecked Sendable {
    /// Readings per hour of a (device, metric) above which the hour keeps minute rows.
    public static let minuteRowsAbove = 60
    /// Delta rows one fold takes at most; while more wait, the next fold starts at once.
    /// Bounded, so a backlog is worked off in steady steps rather than one statement that
    /// outgrows memory and slows down as it grows.
    public static let foldLimit = 100_000
    /// Serialises folds with ``keepMinutes(before:on:)`` (a PostgreSQL advisory lock key).
    static let lockKey = 0x6875_625f_726f_6c6c  // "hub_roll"

    private var worker: PeriodicWorker!
    /// Where the next fold looks for deltas: a heap block of `rollup_delta`. Folds walk the
    /// table from front to end and then start over, so each one reads past the rows earlier
    /// folds deleted (dead until vacuumed) once per pass, not every time.
    private var cursor = Cursor()
    /// Whether sparse hours made before minute arrays have been given them (first round).
    private var arraysComplete = false

    public init(url: String, interval: Duration = .seconds(1), clock: any HubClock = SystemClock(), logger: Logger) {
        worker = PeriodicWorker(
            name: "hub-rollups", url: url, interval: interval,
            round: { [unowned self] connection in
                if !arraysComplete {
                    try Self.completeMinuteArrays(on: connection)
                    arraysComplete = true
                }
                if try Self.rebuildAbandoned(on: connection) > 0 {
                    logger.notice("rebuilt the rollup deltas a stopped writer held, from their readings")
                }
                return try Self.foldRound(on: connection, cursor: &cursor, logger: logger)
            },
            failed: { error, first in
                if first { logger.warning("rollup fold failed; retrying every second", metadata: ["error": "\(error)"]) }
            }, clock: clock)
    }

    /// A position in `rollup_delta`'s heap.
    public struct Cursor: Sendable {
        var block: Int64 = 0

        public init() {}
    }

    public func start() {
        worker.start()
    }

    /// Stops after the round in progress; returns once its thread has.
    public func stop() async {
        await worker.stop()
    }

    /// One fold, in its own transaction, of up to ``foldLimit`` deltas from `cursor` on.
    /// - Returns: the delta rows taken in.
    @discardableResult
    public static func fold(
        on connection: PostgresConnection, cursor: inout Cursor, limit: Int = foldLimit, arithmetic: SumArithmetic = .fast
    ) throws(PostgresError) -> Int {
        try connection.transaction { () throws(PostgresError) -> Int in
            try connection.execute("SELECT pg_advisory_xact_lock(\(lockKey))")
            // A full fold sorts about 15 MB of rows: in memory, not in temporary files.
            try connection.execute("SET LOCAL work_mem = '64MB'")
            return try foldStatement(on: connection, cursor: &cursor, limit: limit, arithmetic: arithmetic)
        }
    }

    /// One round of folding that no delta can stop (contract section 7): sums are added
    /// with the built-in float arithmetic, and only if that overflows (`22003`) again with
    /// `hub_sum`, which answers NaN instead of failing. Should the database still refuse
    /// the deltas for their content, the fold takes fewer at a time, down to one, and sets
    /// aside the one delta it cannot take, in `rollup_delta_quarantine`, so every other
    /// reading keeps being rolled up.
    /// - Returns: whether more deltas wait.
    public static func foldRound(on connection: PostgresConnection, cursor: inout Cursor, logger: Logger) throws(PostgresError) -> Bool {
        var limit = foldLimit
        while true {
            do {
                let taken: Int
                do {
                    taken = try fold(on: connection, cursor: &cursor, limit: limit)
                } catch where error.sqlState == "22003" && connection.isConnected {
                    taken = try fold(on: connection, cursor: &cursor, limit: limit, arithmetic: .safe)
                }
                return taken == limit
            } catch where !error.isTransient && connection.isConnected {
                if limit > 1 {
                    limit = max(1, limit / 16)
                    continue
                }
                let moved = try connection.query(
                    """
                    WITH moved AS (
                        DELETE FROM rollup_delta WHERE ctid = (SELECT ctid FROM rollup_delta WHERE ctid >= $1::tid LIMIT 1)
                        RETURNING *)
                    INSERT INTO rollup_delta_quarantine SELECT moved.*, now(), $2 FROM moved
                    """, ["(\(cursor.block),0)", error.description]
                ).affectedRows
                logger.error("a rollup delta could not be folded; set aside in rollup_delta_quarantine", metadata: ["error": "\(error)"])
                if moved == 0 { cursor = Cursor() }
                return true
            }
        }
    }

    /// Builds the minute rows of every hour before `cutoff` that has none yet, from its
    /// readings, and from then on keeps minute rows for every hour before it, so minute
    /// buckets survive the readings' retention.
    /// - Returns: the hours that got minute rows.
    @discardableResult
    public static func keepMinutes(before cutoff: String, on connection: PostgresConnection) throws(PostgresError) -> Int {
        try withEveryDeltaFolded(on: connection) { () throws(PostgresError) -> Int in
            let hours = try connection.query(
                """
                WITH due AS (
                    UPDATE rollup_1h SET minutes = true, \(minuteArrays.map { "m_\($0) = NULL" }.joined(separator: ", "))
                    WHERE NOT minutes AND bucket < $1
                    RETURNING device_key, metric_key, bucket),
                built AS (
                    INSERT INTO rollup_1m AS r
                    \(merged(from: "(SELECT x.* FROM \(writtenReadingsAsRows) x JOIN due p \(Self.inHour(of: "p"))) s", bucket: minute("bucket"), arithmetic: .safe))
                    \(upsert(.safe)) RETURNING 1)
                SELECT count(*) FROM due
                """, [cutoff]
            ).rows.first?.first.flatMap { $0.flatMap(Int.init) } ?? 0
            try connection.query("UPDATE rollup_horizon SET minutes_before = greatest(minutes_before, $1)", [cutoff])
            return hours
        }
    }

    /// Gives every sparse hour without minute arrays (folded by a version before them) its
    /// arrays, built from its readings, if `schema.sql` found such hours when it added the
    /// arrays (`rollup_horizon.minute_arrays_missing`). The fold runs it once at start.
    /// - Returns: the hours that got arrays.
    @discardableResult
    public static func completeMinuteArrays(on connection: PostgresConnection) throws(PostgresError) -> Int {
        let flag = "SELECT minute_arrays_missing FROM rollup_horizon"
        guard try connection.query(flag).rows.first?.first == "t" else { return 0 }
        let missing = "SELECT device_key, metric_key, bucket FROM rollup_1h WHERE NOT minutes AND m_minute IS NULL"
        return try withEveryDeltaFolded(on: connection) { () throws(PostgresError) -> Int in
            try connection.query(
                """
                WITH missing AS (\(missing)),
                built AS (\(minuteArraysMerged(from: """
                    SELECT x.device_key, x.metric_key, p.bucket AS hour, \(minuteInHour("x.bucket", hour: "p.bucket")) AS minute,
                        x.count, x.value_count, x.sum, x.min, x.max
                    FROM \(writtenReadingsAsRows) x JOIN missing p \(inHour(of: "p"))
                    """, arithmetic: .safe))),
                done AS (
                    UPDATE rollup_1h h SET \(minuteArrays.map { "m_\($0) = b.m_\($0)" }.joined(separator: ", "))
                    FROM built b WHERE h.device_key = b.device_key AND h.metric_key = b.metric_key AND h.bucket = b.hour
                    RETURNING 1),
                flag AS (UPDATE rollup_horizon SET minute_arrays_missing = false)
                SELECT count(*) FROM done
                """
            ).rows.first?.first.flatMap { $0.flatMap(Int.init) } ?? 0
        }
    }

    /// Runs `body` in one repeatable-read transaction that first folds every pending delta,
    /// with other folds held off: rollups then hold exactly the readings `body` sees.
    private static func withEveryDeltaFolded<T>(
        on connection: PostgresConnection, _ body: () throws(PostgresError) -> T
    ) throws(PostgresError) -> T {
        try connection.execute("SELECT pg_advisory_lock(\(lockKey))")
        defer { if connection.isConnected { try? connection.execute("SELECT pg_advisory_unlock(\(lockKey))") } }
        try connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        do {
            var cursor = Cursor()
            while try foldStatement(on: connection, cursor: &cursor, arithmetic: .safe) == foldLimit {}
            let result = try body()
            try connection.execute("COMMIT")
            return result
        } catch {
            if connection.isConnected { try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    /// Takes up to `limit` deltas out and merges them into both rollups. Per hour touched:
    /// an hour with minute rows (or new, and past the threshold or before the horizon) gets
    /// the minute deltas; an hour crossing the threshold gets minute rows built from all its
    /// readings, once every delta of those readings is in this fold (until then it stays
    /// sparse); a sparse hour gets the minute deltas merged into its minute arrays.
    ///
    /// Moves `cursor` past the deltas taken, or back to the front once it reached the end.
    @discardableResult
    static func foldStatement(
        on connection: PostgresConnection, cursor: inout Cursor, limit: Int = foldLimit, arithmetic: SumArithmetic = .fast
    ) throws(PostgresError) -> Int {
        let row = try connection.query(
            """
            WITH chosen AS (SELECT ARRAY(SELECT ctid FROM rollup_delta WHERE ctid >= $1::tid LIMIT \(limit)) AS rows),
            taken AS (
                DELETE FROM rollup_delta WHERE ctid = ANY ((SELECT rows FROM chosen)::tid[])
                RETURNING *, (ctid::text::point)[0]::bigint AS block),
            added AS (\(merged(from: "taken", bucket: hour("bucket"), arithmetic: arithmetic))),
            plan AS (
                SELECT a.device_key, a.metric_key, a.bucket, h.device_key IS NULL AS fresh, coalesce(h.minutes, false) AS had,
                    coalesce(h.minutes, false)
                        OR (h.device_key IS NULL AND (a.count > \(minuteRowsAbove) OR a.bucket < (SELECT minutes_before FROM rollup_horizon)))
                        OR (h.device_key IS NOT NULL AND h.count + a.count > \(minuteRowsAbove) AND NOT EXISTS (
                            -- Built from readings, the minute rows would count these twice.
                            SELECT FROM rollup_delta d
                            WHERE d.device_key = a.device_key AND d.metric_key = a.metric_key
                                AND d.bucket >= a.bucket AND d.bucket < a.bucket + interval '1 hour'
                                AND d.ctid <> ALL ((SELECT rows FROM chosen)::tid[]))) AS minutes
                    , \(minuteArrays.map { "h.m_\($0)" }.joined(separator: ", "))
                FROM added a LEFT JOIN LATERAL (
                    -- One index probe per hour touched (LIMIT keeps it so), not a scan of rollup_1h.
                    SELECT h.device_key, h.count, h.minutes, \(minuteArrayColumns) FROM rollup_1h h
                    WHERE h.device_key = a.device_key AND h.metric_key = a.metric_key AND h.bucket = a.bucket LIMIT 1) h ON true),
            sparse AS (\(minuteArraysMerged(from: """
                SELECT p.device_key, p.metric_key, p.bucket AS hour, u.minute, \(minuteArrays.dropFirst().map { "\(minuteValue($0)) AS \($0)" }.joined(separator: ", "))
                FROM plan p CROSS JOIN LATERAL \(unnestMinuteArrays(of: "p"))
                WHERE NOT p.minutes
                UNION ALL
                SELECT x.device_key, x.metric_key, p.bucket, \(minuteInHour("x.bucket", hour: "p.bucket")), x.count, x.value_count, x.sum, x.min, x.max
                FROM taken x JOIN plan p ON p.device_key = x.device_key AND p.metric_key = x.metric_key AND p.bucket = \(hour("x.bucket"))
                WHERE NOT p.minutes
                """, arithmetic: arithmetic))),
            hours AS (
                INSERT INTO rollup_1h AS r (device_key, metric_key, bucket, \(aggregateColumns.joined(separator: ", ")), minutes, \(minuteArrayColumns))
                SELECT a.*, p.minutes, \(minuteArrays.map { "s.m_\($0)" }.joined(separator: ", ")) FROM added a
                    JOIN plan p ON p.device_key = a.device_key AND p.metric_key = a.metric_key AND p.bucket = a.bucket
                    LEFT JOIN sparse s ON s.device_key = a.device_key AND s.metric_key = a.metric_key AND s.hour = a.bucket
                \(upsert(arithmetic)), minutes = excluded.minutes, \(minuteArrays.map { "m_\($0) = excluded.m_\($0)" }.joined(separator: ", "))
                RETURNING 1),
            minutes AS (
                INSERT INTO rollup_1m AS r
                \(merged(from: "(SELECT x.* FROM taken x WHERE EXISTS (SELECT FROM plan p WHERE p.device_key = x.device_key AND p.metric_key = x.metric_key AND p.bucket = \(hour("x.bucket")) AND p.minutes AND (p.had OR p.fresh))) s", bucket: "bucket", arithmetic: arithmetic))
                UNION ALL
                \(merged(from: "(SELECT x.* FROM \(writtenReadingsAsRows) x JOIN plan p \(inHour(of: "p")) WHERE p.minutes AND NOT p.had AND NOT p.fresh) s", bucket: minute("bucket"), arithmetic: arithmetic))
                \(upsert(arithmetic))
                RETURNING 1)
            SELECT count(*), max(block) FROM taken
            """, ["(\(cursor.block),0)"]
        ).rows.first
        let taken = row?[0].flatMap { Int($0) } ?? 0
        cursor.block = taken == limit ? row?[1].flatMap { Int64($0) } ?? 0 : 0
        return taken
    }

    static let aggregateColumns = [
        "count", "value_count", "sum", "min", "max",
        "first_ts", "first_seq", "first_type", "first_value", "first_text",
        "last_ts", "last_seq", "last_type", "last_value", "last_text", "min_seq", "max_seq",
    ]

    /// The per-minute arrays of a sparse hour in `rollup_1h` (column `m_<name>`): the
    /// minute within the hour, then what `count`, `sum`, `avg`, `min` and `max` need. In a
    /// minute of one reading, `value_count`, `min` and `max` are NULL (a bit each): they
    /// follow from its `sum` (``minuteValue(_:of:)``).
    static let minuteArrays = ["minute", "count", "value_count", "sum", "min", "max"]

    static let minuteArrayColumns = minuteArrays.map { "m_\($0)" }.joined(separator: ", ")

    /// The arrays to read for the minutes' `column`.
    static func minuteArraysNeeded(for column: String) -> [String] {
        ["value_count", "min", "max"].contains(column) ? [column, "sum"] : [column]
    }

    /// The hour row `hour`'s minutes as rows `u(minute, …)`, from the arrays `arrays`.
    static func unnestMinuteArrays(of hour: String, _ arrays: [String] = minuteArrays) -> String {
        let arrays = arrays.first == "minute" ? arrays : ["minute"] + arrays
        return "unnest(\(arrays.map { "\(hour).m_\($0)" }.joined(separator: ", "))) AS u(\(arrays.joined(separator: ", ")))"
    }

    /// A minute's `column` from the unnested arrays `u`.
    static func minuteValue(_ column: String, of u: String = "u") -> String {
        switch column {
        case "value_count": "coalesce(\(u).value_count, (\(u).sum IS NOT NULL)::integer)"
        case "min", "max": "coalesce(\(u).\(column), \(u).sum)"
        default: "\(u).\(column)"
        }
    }

    /// The minute (0-59) of `time` within the hour starting at `hour`.
    static func minuteInHour(_ time: String, hour: String) -> String {
        "((date_part('epoch', \(time)) - date_part('epoch', \(hour))) / 60)::smallint"
    }

    /// Rows `(device_key, metric_key, hour, minute, count, value_count, sum, min, max)` of
    /// `source` merged per minute, then gathered into one row of minute arrays per hour. No
    /// array is sorted, but all are built from the same rows in the same order, so their
    /// elements line up.
    static func minuteArraysMerged(from source: String, arithmetic: SumArithmetic) -> String {
        """
        SELECT device_key, metric_key, hour, array_agg(minute) AS m_minute, array_agg(count) AS m_count,
            array_agg(CASE WHEN count > 1 THEN value_count END) AS m_value_count, array_agg(sum) AS m_sum,
            array_agg(CASE WHEN count > 1 THEN min END) AS m_min, array_agg(CASE WHEN count > 1 THEN max END) AS m_max
        FROM (
            SELECT device_key, metric_key, hour, minute, sum(count)::integer AS count, sum(value_count)::integer AS value_count,
                \(arithmetic.sum("sum")) AS sum, min(min) AS min, max(max) AS max
            FROM (\(source)) parts GROUP BY 1, 2, 3, 4) minutes
        GROUP BY 1, 2, 3
        """
    }

    /// Each reading as a one-reading rollup row (its `bucket` is its `ts`).
    static let readingsAsRows = """
        (SELECT device_key, metric_key, ts AS bucket, 1::bigint AS count, (value IS NOT NULL)::int::bigint AS value_count,
            value AS sum, value AS min, value AS max,
            ts AS first_ts, seq AS first_seq, value_type AS first_type, value AS first_value, text_value AS first_text,
            ts AS last_ts, seq AS last_seq, value_type AS last_type, value AS last_value, text_value AS last_text,
            seq AS min_seq, seq AS max_seq
        FROM reading)
        """

    /// ``readingsAsRows`` without the readings whose deltas a writer still holds
    /// (`rollup_pending`): rollups built from readings leave those to the deltas, which
    /// reach the fold later.
    static let writtenReadingsAsRows = """
        (SELECT * FROM \(readingsAsRows) x WHERE NOT EXISTS (
            SELECT FROM rollup_pending_range p WHERE p.device_key = x.device_key AND x.bucket >= p.ts_lo AND x.bucket <= p.ts_hi
                AND x.min_seq >= p.seq_lo AND x.min_seq <= p.seq_hi))
        """

    /// Rebuilds, from their readings, the minute deltas that writers no longer running
    /// held (`rollup_pending` rows whose writer's advisory lock is free: its connection is
    /// gone), each writer in one transaction with the removal of its rows.
    /// - Returns: the writers whose deltas were rebuilt.
    @discardableResult
    public static func rebuildAbandoned(on connection: PostgresConnection) throws(PostgresError) -> Int {
        let writers = try connection.query("SELECT DISTINCT writer FROM rollup_pending").rows.compactMap { $0[0] }
        var rebuilt = 0
        for writer in writers {
            let done = try connection.transaction { () throws(PostgresError) -> Bool in
                guard try connection.query("SELECT pg_try_advisory_xact_lock(x'68756270'::integer, $1::integer)", [writer])
                    .rows.first?.first == "t" else { return false }
                try connection.query(
                    "INSERT INTO rollup_delta \(merged(from: "(SELECT * FROM rollup_unflushed WHERE writer = $1::integer) s", bucket: "bucket", arithmetic: .safe))",
                    [writer])
                try connection.query("DELETE FROM rollup_pending WHERE writer = $1::integer", [writer])
                return true
            }
            if done { rebuilt += 1 }
        }
        return rebuilt
    }

    /// Joins the rows `x` to the hour row `hour` they fall in.
    static func inHour(of hour: String) -> String {
        """
        ON \(hour).device_key = x.device_key AND \(hour).metric_key = x.metric_key
            AND x.bucket >= \(hour).bucket AND x.bucket < \(hour).bucket + interval '1 hour'
        """
    }

    static func minute(_ column: String) -> String {
        "date_bin('1 minute', \(column), 'epoch')"
    }

    static func hour(_ column: String) -> String {
        "date_bin('1 hour', \(column), 'epoch')"
    }

    /// Rollup-shaped rows of `source` merged per (device, metric, `bucket`); first and last
    /// by (ts, seq), each taken whole as a `rollup_edge` (one sort per group and side).
    static func merged(from source: String, bucket: String, arithmetic: SumArithmetic) -> String {
        func edge(_ side: String) -> String {
            ["ts", "seq", "type", "value", "text"].map { "(\(side)).\($0) AS \(side)_\($0)" }.joined(separator: ", ")
        }
        return """
            SELECT device_key, metric_key, bucket, count, value_count, sum, min, max, \(edge("first")), \(edge("last")), min_seq, max_seq FROM (
                SELECT device_key, metric_key, \(bucket) AS bucket, sum(count)::bigint AS count, sum(value_count)::bigint AS value_count,
                    \(arithmetic.sum("sum")) AS sum, min(min) AS min, max(max) AS max,
                    (array_agg((first_ts, first_seq, first_type, first_value, first_text)::rollup_edge ORDER BY first_ts, first_seq))[1] AS first,
                    (array_agg((last_ts, last_seq, last_type, last_value, last_text)::rollup_edge ORDER BY last_ts DESC, last_seq DESC))[1] AS last,
                    -- Unknown (NULL, folded before seq ranges were kept) in any part: unknown.
                    CASE WHEN count(*) = count(min_seq) THEN min(min_seq) END AS min_seq,
                    CASE WHEN count(*) = count(max_seq) THEN max(max_seq) END AS max_seq
                FROM \(source) GROUP BY 1, 2, 3) merged
            """
    }

    /// Adds a merged row to the one already stored for its bucket.
    static func upsert(_ arithmetic: SumArithmetic) -> String {
        let first = ["first_ts", "first_seq", "first_type", "first_value", "first_text"].map {
            "\($0) = CASE WHEN (excluded.first_ts, excluded.first_seq) < (r.first_ts, r.first_seq) THEN excluded.\($0) ELSE r.\($0) END"
        }
        let last = ["last_ts", "last_seq", "last_type", "last_value", "last_text"].map {
            "\($0) = CASE WHEN (excluded.last_ts, excluded.last_seq) > (r.last_ts, r.last_seq) THEN excluded.\($0) ELSE r.\($0) END"
        }
        return """
            ON CONFLICT (device_key, metric_key, bucket) DO UPDATE SET
            count = r.count + excluded.count, value_count = r.value_count + excluded.value_count,
            sum = \(arithmetic.add("r.sum", "excluded.sum")),
            min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max),
            min_seq = CASE WHEN r.min_seq IS NULL OR excluded.min_seq IS NULL THEN NULL ELSE LEAST(r.min_seq, excluded.min_seq) END,
            max_seq = CASE WHEN r.max_seq IS NULL OR excluded.max_seq IS NULL THEN NULL ELSE GREATEST(r.max_seq, excluded.max_seq) END,
            \((first + last).joined(separator: ",\n"))
            """
    }
}

/// How sums of `double precision` are added in SQL. PostgreSQL's `sum()` and `+` fail with
/// `22003` when two finite values add up past the largest double; `hub_sum` and `hub_add`
/// (schema.sql) answer NaN instead, which queries report as `null`. The built-in ones are
/// faster, so they go first and the safe ones are the fallback.
public enum SumArithmetic: Sendable {
    case fast
    case safe

    func sum(_ expression: String) -> String {
        switch self {
        case .fast: "sum(\(expression))"
        case .safe: "hub_sum(\(expression))"
        }
    }

    /// `a + b`, where a NULL side counts as nothing.
    func add(_ a: String, _ b: String) -> String {
        switch self {
        case .fast: "CASE WHEN \(a) IS NULL THEN \(b) WHEN \(b) IS NULL THEN \(a) ELSE \(a) + \(b) END"
        case .safe: "hub_add(\(a), \(b))"
        }
    }
}

extension RollupFolder: Service {
    /// Works until the graceful shutdown, then stops after the round in progress.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await stop()
    }
}
