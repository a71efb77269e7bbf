import HubIngest
import HubProtocol
import Postgres

/// Reads stored readings back for `/live` replays, on the control-plane database thread.
public struct PostgresTelemetryHistory: TelemetryHistory {
    /// Rows fetched per page: more than one frame can hold, so a page always ends with at
    /// least one whole frame. A frame of `maxFrameBytes` holds at most `maxFrameBytes / 8`
    /// readings (the smallest takes 8 bytes); at the default 64 KiB a page is 10,000 rows.
    public static func pageRows(maxFrameBytes: Int) -> Int {
        max(10_000, maxFrameBytes / FrameLimits.minReadingSize + 1)
    }

    public static let defaultPageRows = pageRows(maxFrameBytes: 65_536)

    private let executor: DatabaseExecutor
    /// Rollups older than this many days are deleted (`--rollup-retention-days`); readings
    /// older than that are found without their help.
    private let rollupRetentionDays: Int?

    /// Rows per page (tests use small pages to cross many page ends).
    private let pageRows: Int

    public init(executor: DatabaseExecutor, rollupRetentionDays: Int? = nil, pageRows: Int = defaultPageRows) {
        self.executor = executor
        self.rollupRetentionDays = rollupRetentionDays
        self.pageRows = pageRows
    }

    /// Replay by seq with no index on seq in `reading` (one would cost ingest about 15 %).
    /// Every reading is counted in a rollup row (a minute, or a sparse hour) or a pending
    /// delta, which knows the lowest and highest seq among its readings. The groups whose
    /// highest seq is past `afterSeq` are taken in order of their lowest seq until they hold
    /// a page; every reading with a seq below the next group's lowest is then in the groups
    /// taken, so the page reads only their time range (through the `(device_key, ts)`
    /// index) and the seqs below that bound.
    public func page(deviceKey: Int32, afterSeq: UInt64, sinceMicros: Int64?, metrics: Set<String>?) async throws -> [StoredReading] {
        let metricList = metrics.map { arrayLiteral($0.sorted().map(arrayElement)) }
        let (expired, pageRows) = (rollupRetentionDays, pageRows)
        let rows = try await executor.run { connection in
            var after = afterSeq
            while true {
                let parameters = [String(deviceKey), String(after), sinceMicros.map(String.init), metricList]
                guard let window = try Self.window(on: connection, parameters, pageRows: pageRows, rollupRetentionDays: expired) else {
                    return [[String?]]()
                }
                let rows = try connection.query(
                    """
                    SELECT r.seq, m.name, (extract(epoch FROM r.ts) * 1000000)::bigint, r.value_type, r.value, r.text_value
                    FROM reading r JOIN metric m ON m.key = r.metric_key
                    WHERE r.device_key = $1 AND r.seq > $2 AND r.ts >= $5::timestamptz AND r.ts < $6::timestamptz
                      AND ($7::bigint IS NULL OR r.seq < $7::bigint)
                      AND ($3::bigint IS NULL OR r.ts >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond')
                      AND ($4::text[] IS NULL OR m.name = ANY($4::text[]))
                    ORDER BY r.seq, r.ts, m.name
                    LIMIT \(pageRows)
                    """,
                    parameters + [window.from, window.to, window.below.map(String.init)]
                ).rows
                // Every seq below `below` has been looked at: if none passed the filters,
                // the next groups may hold some.
                guard rows.isEmpty, let below = window.below, below > 0 else { return rows }
                after = below - 1
            }
        }
        var readings = rows.compactMap(Self.reading)
        // A full page may end inside a frame: keep whole frames only; the next page starts after.
        if rows.count == pageRows, let last = readings.last?.seq, readings.first?.seq != last {
            readings.removeAll { $0.seq == last }
        }
        return readings
    }

    /// The time range and seq bound of the next page: `parameters` are the device key, the
    /// seq after which to read, `since_us` and the metric names. `nil` when no reading
    /// after that seq is left.
    private static func window(
        on connection: PostgresConnection, _ parameters: [String?], pageRows: Int, rollupRetentionDays: Int?
    ) throws(PostgresError) -> (from: String, to: String, below: UInt64?)? {
        let metric = "($4::text[] IS NULL OR r.metric_key = ANY (SELECT key FROM metric WHERE name = ANY ($4::text[])))"
        func groups(_ table: String, span: String, _ condition: String = "true") -> String {
            """
            SELECT coalesce(r.min_seq, 0) AS lo, r.bucket AS start, r.bucket + interval '\(span)' AS stop, r.count FROM \(table) r
            WHERE r.device_key = $1 AND coalesce(r.max_seq, 9223372036854775807) > $2 AND \(metric) AND \(condition)
                AND ($3::bigint IS NULL OR r.bucket + interval '\(span)' > 'epoch'::timestamptz + $3::bigint * interval '1 microsecond')
            """
        }
        // Readings whose rollups retention deleted: one group of unknown seqs before the cut.
        let expired = rollupRetentionDays.map {
            "UNION ALL SELECT 0, '-infinity'::timestamptz, now() - interval '\($0) days', \(pageRows)::bigint"
        } ?? ""
        // Groups are taken in order of their lowest seq while they hold less than a page,
        // and always those that may hold the very next seq; the rest all start later.
        let taken = "(before < \(pageRows) OR lo <= $2::bigint + 1)"
        let row = try connection.query(
            """
            WITH g AS (
                \(groups("rollup_1m", span: "1 minute")) UNION ALL \(groups("rollup_1h", span: "1 hour", "NOT r.minutes"))
                UNION ALL \(groups("rollup_unfolded", span: "1 minute")) \(expired)),
            o AS (SELECT lo, start, stop, sum(count) OVER (ORDER BY lo, start ROWS UNBOUNDED PRECEDING) - count AS before FROM g)
            SELECT (SELECT min(start) FROM o WHERE \(taken))::text, (SELECT max(stop) FROM o WHERE \(taken))::text,
                (SELECT min(lo) FROM o WHERE NOT \(taken))
            """, parameters
        ).rows.first
        guard let from = row?[0] ?? nil, let to = row?[1] ?? nil else { return nil }
        return (from, to, (row?[2] ?? nil).flatMap { UInt64($0) })
    }

    static func reading(_ row: [String?]) -> StoredReading? {
        guard let seq = row[0].flatMap(UInt64.init), let metric = row[1], let ts = row[2].flatMap(Int64.init),
            let type = row[3].flatMap(Int.init)
        else { return nil }
        let number = row[4].flatMap(Double.init) ?? 0
        let value: Value =
            switch type {
            case 2: .i64(number >= 0x1p63 ? .max : number <= -0x1p63 ? .min : Int64(number))
            case 3: .bool(number != 0)
            case 4: .string(row[5] ?? "")
            default: .f64(number)
            }
        return StoredReading(seq: seq, metric: metric, tsMicros: ts, value: value)
    }
}
