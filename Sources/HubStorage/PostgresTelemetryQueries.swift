import HubIngest
import HubProtocol
import Postgres

/// REST telemetry queries, computed in SQL on the control-plane database thread.
public struct PostgresTelemetryQueries: TelemetryQueries {
    private let executor: DatabaseExecutor
    private let useRollups: Bool

    /// - Parameter useRollups: answer bucketed queries from the rollups where they can
    ///   (tests turn it off to compare with the raw answer).
    public init(executor: DatabaseExecutor, useRollups: Bool = true) {
        self.executor = executor
        self.useRollups = useRollups
    }

    /// How a query treats `metric` ($2): one named metric is filtered by its key, with no
    /// join per row; without one, every metric, its name joined in.
    private struct MetricColumn {
        let join: String
        let name: String
        let filter: String

        init(_ metric: String?) {
            if metric != nil {
                (join, name, filter) = ("", "$2::text", "r.metric_key = (SELECT key FROM metric WHERE name = $2)")
            } else {
                (join, name, filter) = ("JOIN metric m ON m.key = r.metric_key", "m.name", "$2::text IS NULL")
            }
        }
    }

    /// Filters shared by the queries: $1 device key, $2 metric, $3 from, $4 to (µs), on
    /// `r.ts` (readings) or `r.bucket` (rollups).
    private static func filters(_ m: MetricColumn, time: String = "ts", startingBefore slack: String? = nil) -> String {
        """
        r.device_key = $1
        AND \(m.filter)
        AND ($3::bigint IS NULL OR r.\(time) \(slack.map { "> \(micros("$3")) - \($0)" } ?? ">= \(micros("$3"))"))
        AND ($4::bigint IS NULL OR r.\(time) < \(micros("$4")))
        """
    }

    public func raw(deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, limit: Int) async throws -> [TelemetryRow] {
        let parameters = Self.parameters(deviceKey, metric, fromMicros, toMicros)
        let m = MetricColumn(metric)
        return try await executor.run { connection in
            try connection.query(
                """
                SELECT (extract(epoch FROM r.ts) * 1000000)::bigint, \(m.name), r.seq, r.value_type, r.value, r.text_value
                FROM reading r \(m.join)
                WHERE \(Self.filters(m))
                ORDER BY r.ts, r.seq, 2
                LIMIT \(limit)
                """, parameters, rows: Self.reading)
        }
    }

    /// A row `(ts µs, metric, seq, value_type, value, text_value)`.
    private static func reading(_ row: PostgresRow) -> TelemetryRow {
        TelemetryRow(
            tsMicros: row.int64(0) ?? 0, metric: row.string(1) ?? "", seq: row.int64(2).map { UInt64(bitPattern: $0) },
            value: value(type: row.int64(3) ?? 1, number: row.double(4), text: row.string(5)))
    }

    public func buckets(
        deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, bucketSeconds: Int64, aggregate: Aggregate,
        limit: Int
    ) async throws -> [TelemetryRow] {
        let parameters = Self.parameters(deviceKey, metric, fromMicros, toMicros) + [String(bucketSeconds)]
        let m = MetricColumn(metric)
        func sql(_ arithmetic: SumArithmetic) -> String {
            if useRollups, let table = Self.rollup(bucketSeconds: bucketSeconds, fromMicros: fromMicros, toMicros: toMicros) {
                return Self.rollupBuckets(table, aggregate: aggregate, metric: m, arithmetic: arithmetic)
            }
            // The bucket's start in microseconds (whole seconds, so exact in a double).
            let bucket = "(date_part('epoch', date_bin(make_interval(secs => $5::bigint), r.ts, 'epoch')) * 1000000)::bigint"
            return Self.rawBuckets(aggregate: aggregate, bucket: bucket, metric: m, arithmetic: arithmetic)
        }
        let (fast, safe) = ("SELECT * FROM (\(sql(.fast))) b ORDER BY 1, 2 LIMIT \(limit)", "SELECT * FROM (\(sql(.safe))) b ORDER BY 1, 2 LIMIT \(limit)")
        let read = { @Sendable (row: PostgresRow) -> TelemetryRow in
            let value: Value? =
                aggregate == .last
                ? Self.value(type: row.int64(2) ?? 1, number: row.double(3), text: row.string(4))
                // An overflowed sum is NaN (or infinite): `null`, as the contract asks.
                : aggregate == .count ? row.int64(3).map(Value.i64) : row.double(3).flatMap { $0.isFinite ? Value.f64($0) : nil }
            return TelemetryRow(tsMicros: row.int64(0) ?? 0, metric: row.string(1) ?? "", seq: nil, value: value)
        }
        return try await executor.run { connection in
            // The built-in sum first; only if it overflows, again with the sum that cannot.
            do {
                return try connection.query(fast, parameters, rows: read)
            } catch let error as PostgresError where error.sqlState == "22003" && connection.isConnected {
                return try connection.query(safe, parameters, rows: read)
            }
        }
    }

    /// The coarsest rollup that answers exactly: its span divides `bucket_s`, and the
    /// range starts and ends on its boundaries. `nil`: only raw readings answer.
    static func rollup(bucketSeconds: Int64, fromMicros: Int64?, toMicros: Int64?) -> String? {
        for (table, span) in [("rollup_1h", Int64(3600)), ("rollup_1m", 60)] where bucketSeconds % span == 0 {
            let micros = span * 1_000_000
            if (fromMicros ?? 0) % micros == 0 && (toMicros ?? 0) % micros == 0 { return table }
        }
        return nil
    }

    /// Buckets from a rollup and its minute deltas not folded into it yet (read in the same
    /// snapshot). Minute buckets of sparse hours, which keep no minute rows, come from their
    /// hour row's minute arrays, or for `last` from their readings. Each row's bucket is
    /// taken to microseconds once, and the query's buckets are whole multiples of it, in
    /// integer arithmetic. Only the columns the aggregate needs are read.
    private static func rollupBuckets(_ table: String, aggregate: Aggregate, metric m: MetricColumn, arithmetic: SumArithmetic) -> String {
        let columns: [String] = switch aggregate {
        case .count: ["count"]
        case .avg: ["sum", "value_count"]
        case .last: ["last_ts", "last_seq", "last_type", "last_value", "last_text"]
        default: [aggregate.rawValue]
        }
        // Whole minutes and hours are exact in a double; a reading's own time (the readings of
        // sparse hours, for `last`) is not, near the year 9999: there, exact numeric epoch.
        let micros = "(date_part('epoch', r.bucket) * 1000000)::bigint"
        let exactMicros = "(extract(epoch FROM r.bucket) * 1000000)::bigint"
        func rows(from source: String, where condition: String = "true", exact: Bool = false) -> String {
            """
            SELECT \(exact ? exactMicros : micros) AS bucket, r.metric_key, \(columns.map { "r.\($0)" }.joined(separator: ", ")) FROM \(source) r
            WHERE \(filters(m, time: "bucket")) AND \(condition)
            """
        }
        let source: String
        switch (table, aggregate) {
        case ("rollup_1m", .last):
            // The (hour, metrics) with readings but no minute rows: sparse hours, and hours
            // whose only readings are still deltas. Their readings are read an hour at a
            // time (`OFFSET 0` keeps the planner from turning that into a scan of the range).
            let kept = """
                EXISTS (SELECT FROM rollup_1h h WHERE h.device_key = r.device_key AND h.metric_key = r.metric_key
                    AND h.bucket = \(RollupFolder.hour("r.bucket")) AND h.minutes)
                """
            let sparse = """
                SELECT hour, array_agg(DISTINCT metric_key) AS metrics FROM (
                    SELECT r.bucket AS hour, r.metric_key FROM rollup_1h r
                    WHERE NOT r.minutes AND \(filters(m, time: "bucket", startingBefore: "interval '1 hour'"))
                    UNION ALL
                    SELECT \(RollupFolder.hour("r.bucket")), r.metric_key FROM rollup_unfolded r WHERE \(filters(m, time: "bucket")) AND NOT \(kept)
                ) hours GROUP BY hour
                """
            source = """
                \(rows(from: "rollup_1m")) UNION ALL \(rows(from: "rollup_unfolded", where: kept))
                UNION ALL \(rows(from: """
                    (SELECT x.* FROM (\(sparse)) s CROSS JOIN LATERAL (
                        SELECT * FROM \(RollupFolder.readingsAsRows) x
                        WHERE x.device_key = $1 AND x.bucket >= s.hour AND x.bucket < s.hour + interval '1 hour' AND x.metric_key = ANY (s.metrics)
                        OFFSET 0) x)
                    """, exact: true))
                """
        case ("rollup_1m", _):
            let arrays = columns.flatMap(RollupFolder.minuteArraysNeeded(for:))
            source = """
                \(rows(from: table)) UNION ALL \(rows(from: "rollup_unfolded"))
                UNION ALL SELECT \(micros) + u.minute * 60000000::bigint, r.metric_key, \(columns.map { RollupFolder.minuteValue($0) }.joined(separator: ", "))
                FROM rollup_1h r CROSS JOIN LATERAL \(RollupFolder.unnestMinuteArrays(of: "r", Array(Set(arrays)).sorted()))
                WHERE NOT r.minutes AND \(filters(m, time: "bucket", startingBefore: "interval '1 hour'"))
                """
        default:
            source = "\(rows(from: table)) UNION ALL \(rows(from: "rollup_unfolded"))"
        }
        let width = "($5::bigint * 1000000)"
        let bucket = "(r.bucket - ((r.bucket % \(width)) + \(width)) % \(width))"
        let from = """
            (\(source)) r \(m.join)
            WHERE ($3::bigint IS NULL OR r.bucket >= $3) AND ($4::bigint IS NULL OR r.bucket < $4)
            """
        switch aggregate {
        case .last:
            return """
                SELECT DISTINCT ON (\(m.name), \(bucket)) \(bucket) AS bucket, \(m.name), r.last_type, r.last_value, r.last_text
                FROM \(from)
                ORDER BY \(m.name), \(bucket), r.last_ts DESC, r.last_seq DESC
                """
        default:
            let function = switch aggregate {
            case .count: "sum(r.count)::bigint"
            case .avg: "\(arithmetic.sum("r.sum")) / NULLIF(sum(r.value_count), 0)"
            case .sum: arithmetic.sum("r.sum")
            default: "\(aggregate.rawValue)(r.\(aggregate.rawValue))"
            }
            return "SELECT \(bucket) AS bucket, \(m.name), 0, \(function), NULL FROM \(from) GROUP BY 1, 2"
        }
    }

    /// A `timestamptz` from microseconds in a parameter.
    private static func micros(_ parameter: String) -> String {
        "('epoch'::timestamptz + \(parameter)::bigint * interval '1 microsecond')"
    }

    private static func rawBuckets(aggregate: Aggregate, bucket: String, metric m: MetricColumn, arithmetic: SumArithmetic) -> String {
        switch aggregate {
        case .last:
            // The newest reading of each bucket: its number, or its text for strings.
            return """
                SELECT DISTINCT ON (\(m.name), \(bucket)) \(bucket) AS bucket, \(m.name), r.value_type, r.value, r.text_value
                FROM reading r \(m.join)
                WHERE \(Self.filters(m))
                ORDER BY \(m.name), \(bucket), r.ts DESC, r.seq DESC
                """
        default:
            // `avg` as sum over count: PostgreSQL's float avg() also sums squares, which
            // overflow from 1.4e154 on.
            let function = switch aggregate {
            case .count: "count(*)"
            case .sum: arithmetic.sum("r.value")
            case .avg: "\(arithmetic.sum("r.value")) / NULLIF(count(r.value), 0)"
            default: "\(aggregate.rawValue)(r.value)"
            }
            return """
                SELECT \(bucket) AS bucket, \(m.name), 0, \(function), NULL
                FROM reading r \(m.join)
                WHERE \(Self.filters(m))
                GROUP BY 1, 2
                """
        }
    }

    public func latest(deviceKey: Int32) async throws -> [TelemetryRow] {
        try await executor.run { connection in
            try connection.query(
                """
                SELECT DISTINCT ON (r.metric_key) (extract(epoch FROM r.ts) * 1000000)::bigint, m.name, r.seq,
                       r.value_type, r.value, r.text_value
                FROM reading r JOIN metric m ON m.key = r.metric_key
                WHERE r.device_key = $1
                ORDER BY r.metric_key, r.ts DESC, r.seq DESC
                """, [String(deviceKey)], rows: Self.reading)
        }
    }

    private static func parameters(_ key: Int32, _ metric: String?, _ from: Int64?, _ to: Int64?) -> [String?] {
        [String(key), metric, from.map(String.init), to.map(String.init)]
    }

    /// A stored value for REST: booleans as stored (0/1), integers as integers.
    static func value(type: Int64, number: Double?, text: String?) -> Value? {
        switch type {
        case 4: return text.map(Value.string)
        case 2, 3:
            guard let double = number else { return nil }
            return .i64(double >= 0x1p63 ? .max : double <= -0x1p63 ? .min : Int64(double))
        default: return number.map(Value.f64)
        }
    }
}
