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
    private static func filters(_ m: MetricColumn, time: String = "ts") -> String {
        """
        r.device_key = $1
        AND \(m.filter)
        AND ($3::bigint IS NULL OR r.\(time) >= \(micros("$3")))
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
                """, parameters
            ).rows.map { row in
                TelemetryRow(
                    tsMicros: Int64(row[0]!)!, metric: row[1]!, seq: UInt64(row[2]!),
                    value: Self.value(type: row[3].flatMap { Int($0) } ?? 1, number: row[4], text: row[5]))
            }
        }
    }

    public func buckets(
        deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, bucketSeconds: Int64, aggregate: Aggregate,
        limit: Int
    ) async throws -> [TelemetryRow] {
        let parameters = Self.parameters(deviceKey, metric, fromMicros, toMicros) + [String(bucketSeconds)]
        let rollup = useRollups ? Self.rollup(bucketSeconds: bucketSeconds, fromMicros: fromMicros, toMicros: toMicros) : nil
        // The bucket's start in microseconds (whole seconds, so exact in a double).
        let bucket = "(date_part('epoch', date_bin(make_interval(secs => $5::bigint), r.\(rollup == nil ? "ts" : "bucket"), 'epoch')) * 1000000)::bigint"
        let m = MetricColumn(metric)
        let sql: String
        switch (aggregate, rollup) {
        case (.last, let table?):
            sql = """
                SELECT DISTINCT ON (\(m.name), \(bucket)) \(bucket) AS bucket, \(m.name), r.last_type, r.last_value, r.last_text
                FROM \(Self.rollupSource(table)) r \(m.join)
                WHERE \(Self.filters(m, time: "bucket"))
                ORDER BY \(m.name), \(bucket), r.last_ts DESC, r.last_seq DESC
                """
        case (_, let table?):
            let function = switch aggregate {
            case .count: "sum(r.count)::bigint"
            case .avg: "sum(r.sum) / NULLIF(sum(r.value_count), 0)"
            default: "\(aggregate.rawValue)(r.\(aggregate.rawValue))"
            }
            sql = """
                SELECT \(bucket) AS bucket, \(m.name), 0, \(function), NULL
                FROM \(Self.rollupSource(table)) r \(m.join)
                WHERE \(Self.filters(m, time: "bucket"))
                GROUP BY 1, 2
                """
        default:
            sql = Self.rawBuckets(aggregate: aggregate, bucket: bucket, metric: m)
        }
        return try await executor.run { connection in
            try connection.query("SELECT * FROM (\(sql)) b ORDER BY 1, 2 LIMIT \(limit)", parameters).rows.map { row in
                let value: Value? =
                    aggregate == .last
                    ? Self.value(type: row[2].flatMap { Int($0) } ?? 1, number: row[3], text: row[4])
                    : aggregate == .count ? row[3].flatMap { Int64($0) }.map(Value.i64) : row[3].flatMap { Double($0) }.map(Value.f64)
                return TelemetryRow(tsMicros: Int64(row[0]!)!, metric: row[1]!, seq: nil, value: value)
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

    /// A rollup with the minute deltas not folded into it yet (read in the same snapshot).
    /// Minute buckets of sparse hours, which keep no minute rows, come from their readings.
    private static func rollupSource(_ table: String) -> String {
        let columns = "device_key, metric_key, bucket, count, value_count, sum, min, max, last_ts, last_seq, last_type, last_value, last_text"
        let x = columns.split(separator: ", ").map { "x.\($0)" }.joined(separator: ", ")
        guard table == "rollup_1m" else { return "(SELECT \(columns) FROM \(table) UNION ALL SELECT \(columns) FROM rollup_delta)" }
        let kept = """
            EXISTS (SELECT 1 FROM rollup_1h h WHERE h.device_key = x.device_key AND h.metric_key = x.metric_key
                AND h.bucket = \(RollupFolder.hour("x.bucket")) AND h.minutes)
            """
        let metric = "($2::text IS NULL OR x.metric_key = (SELECT key FROM metric WHERE name = $2))"
        // The (hour, metrics) with readings but no minute rows: sparse hours, and hours
        // whose only readings are still deltas. Their readings are read an hour at a time
        // (`OFFSET 0` keeps the planner from turning that into a scan of the whole range).
        let sparse = """
            SELECT hour, array_agg(DISTINCT metric_key) AS metrics FROM (
                SELECT x.bucket AS hour, x.metric_key FROM rollup_1h x
                WHERE x.device_key = $1 AND NOT x.minutes AND \(metric)
                    AND ($3::bigint IS NULL OR x.bucket > \(micros("$3")) - interval '1 hour')
                    AND ($4::bigint IS NULL OR x.bucket < \(micros("$4")))
                UNION ALL
                SELECT \(RollupFolder.hour("x.bucket")), x.metric_key FROM rollup_delta x
                WHERE x.device_key = $1 AND \(metric) AND NOT \(kept)
                    AND ($3::bigint IS NULL OR x.bucket >= \(micros("$3")))
                    AND ($4::bigint IS NULL OR x.bucket < \(micros("$4")))
            ) hours GROUP BY hour
            """
        return """
            (SELECT \(columns) FROM rollup_1m
            UNION ALL SELECT \(x) FROM rollup_delta x WHERE \(kept)
            UNION ALL SELECT \(x) FROM (\(sparse)) s CROSS JOIN LATERAL (
                SELECT * FROM \(RollupFolder.readingsAsRows) x
                WHERE x.device_key = $1 AND x.bucket >= s.hour AND x.bucket < s.hour + interval '1 hour' AND x.metric_key = ANY (s.metrics)
                OFFSET 0) x)
            """
    }

    /// A `timestamptz` from microseconds in a parameter.
    private static func micros(_ parameter: String) -> String {
        "('epoch'::timestamptz + \(parameter)::bigint * interval '1 microsecond')"
    }

    private static func rawBuckets(aggregate: Aggregate, bucket: String, metric m: MetricColumn) -> String {
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
            let function = aggregate == .count ? "count(*)" : "\(aggregate.rawValue)(r.value)"
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
                """, [String(deviceKey)]
            ).rows.map { row in
                TelemetryRow(
                    tsMicros: Int64(row[0]!)!, metric: row[1]!, seq: UInt64(row[2]!),
                    value: Self.value(type: row[3].flatMap { Int($0) } ?? 1, number: row[4], text: row[5]))
            }
        }
    }

    private static func parameters(_ key: Int32, _ metric: String?, _ from: Int64?, _ to: Int64?) -> [String?] {
        [String(key), metric, from.map(String.init), to.map(String.init)]
    }

    /// A stored value for REST: booleans as stored (0/1), integers as integers.
    static func value(type: Int, number: String?, text: String?) -> Value? {
        switch type {
        case 4: return text.map(Value.string)
        case 2, 3:
            guard let double = number.flatMap(Double.init) else { return nil }
            return .i64(double >= 0x1p63 ? .max : double <= -0x1p63 ? .min : Int64(double))
        default: return number.flatMap(Double.init).map(Value.f64)
        }
    }
}
