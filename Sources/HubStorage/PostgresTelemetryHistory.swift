import HubIngest
import HubProtocol
import Postgres

/// Reads stored readings back for `/live` replays, on the control-plane database thread.
public struct PostgresTelemetryHistory: TelemetryHistory {
    /// Rows fetched per page: more than one frame can hold (65,535 readings), so a page
    /// always ends with at least one whole frame.
    public static let pageRows = 70_000

    private let executor: DatabaseExecutor

    public init(executor: DatabaseExecutor) {
        self.executor = executor
    }

    public func page(deviceKey: Int32, afterSeq: UInt64, sinceMicros: Int64?, metrics: Set<String>?) async throws -> [StoredReading] {
        let metricList = metrics.map { arrayLiteral($0.sorted().map(arrayElement)) }
        let rows = try await executor.run { connection in
            try connection.query(
                """
                SELECT r.seq, m.name, (extract(epoch FROM r.ts) * 1000000)::bigint, r.value_type, r.value, r.text_value
                FROM reading r JOIN metric m ON m.key = r.metric_key
                WHERE r.device_key = $1 AND r.seq > $2
                  AND ($3::bigint IS NULL OR r.ts >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond')
                  AND ($4::text[] IS NULL OR m.name = ANY($4::text[]))
                ORDER BY r.seq, r.ts, m.name
                LIMIT \(Self.pageRows)
                """,
                [String(deviceKey), String(afterSeq), sinceMicros.map(String.init), metricList]
            ).rows
        }
        var readings = rows.compactMap(Self.reading)
        // A full page may end inside a frame: keep whole frames only; the next page starts after.
        if rows.count == Self.pageRows, let last = readings.last?.seq, readings.first?.seq != last {
            readings.removeAll { $0.seq == last }
        }
        return readings
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
