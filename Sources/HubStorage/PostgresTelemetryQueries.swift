import HubIngest
import HubProtocol
import Postgres

/// REST telemetry queries, computed in SQL on the control-plane database thread.
public struct PostgresTelemetryQueries: TelemetryQueries {
    private let executor: DatabaseExecutor

    public init(executor: DatabaseExecutor) {
        self.executor = executor
    }

    /// Filters shared by the queries: $1 device key, $2 metric, $3 from, $4 to (µs).
    private static let filters = """
        r.device_key = $1
        AND ($2::text IS NULL OR m.name = $2)
        AND ($3::bigint IS NULL OR r.ts >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond')
        AND ($4::bigint IS NULL OR r.ts < 'epoch'::timestamptz + $4::bigint * interval '1 microsecond')
        """

    public func raw(deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, limit: Int) async throws -> [TelemetryRow] {
        let parameters = Self.parameters(deviceKey, metric, fromMicros, toMicros)
        return try await executor.run { connection in
            try connection.query(
                """
                SELECT (extract(epoch FROM r.ts) * 1000000)::bigint, m.name, r.seq, r.value_type, r.value, r.text_value
                FROM reading r JOIN metric m ON m.key = r.metric_key
                WHERE \(Self.filters)
                ORDER BY r.ts, r.seq, m.name
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
        let bucket = "(floor(extract(epoch FROM r.ts) / $5::bigint) * $5::bigint * 1000000)::bigint"
        let sql: String
        switch aggregate {
        case .last:
            // The newest reading of each bucket: its number, or its text for strings.
            sql = """
                SELECT DISTINCT ON (m.name, \(bucket)) \(bucket) AS bucket, m.name, r.value_type, r.value, r.text_value
                FROM reading r JOIN metric m ON m.key = r.metric_key
                WHERE \(Self.filters)
                ORDER BY m.name, \(bucket), r.ts DESC, r.seq DESC
                """
        default:
            let function = aggregate == .count ? "count(*)" : "\(aggregate.rawValue)(r.value)"
            sql = """
                SELECT \(bucket) AS bucket, m.name, 0, \(function), NULL
                FROM reading r JOIN metric m ON m.key = r.metric_key
                WHERE \(Self.filters)
                GROUP BY m.name, bucket
                """
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
