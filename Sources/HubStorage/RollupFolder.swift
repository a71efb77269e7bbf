import Foundation
import Logging
import Postgres

/// Folds `rollup_delta` into `rollup_1m` and `rollup_1h`, every second, on its own thread
/// and connection: one statement takes the deltas out, merges them per minute and per hour,
/// and upserts both rollups, so a query (which reads rollups and deltas in one snapshot)
/// sees every committed reading exactly once.
public final class RollupFolder: @unchecked Sendable {
    private let worker: PeriodicWorker

    public init(url: String, interval: Duration = .seconds(1), logger: Logger) {
        worker = PeriodicWorker(
            name: "hub-rollups", url: url, interval: interval, round: { try Self.fold(on: $0) },
            failed: { error, first in
                if first { logger.warning("rollup fold failed; retrying every second", metadata: ["error": "\(error)"]) }
            })
    }

    public func start() {
        worker.start()
    }

    public func stop() {
        worker.stop()
    }

    /// One fold. - Returns: the delta rows taken in.
    @discardableResult
    public static func fold(on connection: PostgresConnection) throws(PostgresError) -> Int {
        func merged(_ bucket: String) -> String {
            """
            SELECT device_key, metric_key, \(bucket) AS bucket, sum(count)::bigint, sum(value_count)::bigint,
                sum(sum), min(min), max(max),
                min(first_ts), (array_agg(first_seq ORDER BY first_ts, first_seq))[1],
                (array_agg(first_type ORDER BY first_ts, first_seq))[1], (array_agg(first_value ORDER BY first_ts, first_seq))[1],
                (array_agg(first_text ORDER BY first_ts, first_seq))[1],
                max(last_ts), (array_agg(last_seq ORDER BY last_ts DESC, last_seq DESC))[1],
                (array_agg(last_type ORDER BY last_ts DESC, last_seq DESC))[1], (array_agg(last_value ORDER BY last_ts DESC, last_seq DESC))[1],
                (array_agg(last_text ORDER BY last_ts DESC, last_seq DESC))[1]
            FROM taken GROUP BY device_key, metric_key, \(bucket)
            """
        }
        func upsert() -> String {
            let first = ["first_ts", "first_seq", "first_type", "first_value", "first_text"].map {
                "\($0) = CASE WHEN (excluded.first_ts, excluded.first_seq) < (r.first_ts, r.first_seq) THEN excluded.\($0) ELSE r.\($0) END"
            }
            let last = ["last_ts", "last_seq", "last_type", "last_value", "last_text"].map {
                "\($0) = CASE WHEN (excluded.last_ts, excluded.last_seq) > (r.last_ts, r.last_seq) THEN excluded.\($0) ELSE r.\($0) END"
            }
            return """
                ON CONFLICT (device_key, metric_key, bucket) DO UPDATE SET
                count = r.count + excluded.count, value_count = r.value_count + excluded.value_count,
                sum = CASE WHEN r.sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN r.sum ELSE r.sum + excluded.sum END,
                min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max),
                \((first + last).joined(separator: ",\n"))
                """
        }
        let hour = "'epoch'::timestamptz + floor(extract(epoch FROM bucket) / 3600) * interval '1 hour'"
        return try connection.query(
            """
            WITH taken AS (DELETE FROM rollup_delta RETURNING *),
            minutes AS (INSERT INTO rollup_1m AS r \(merged("bucket")) \(upsert()) RETURNING 1),
            hours AS (INSERT INTO rollup_1h AS r \(merged(hour)) \(upsert()) RETURNING 1)
            SELECT (SELECT count(*) FROM taken)
            """
        ).rows.first?.first.flatMap { $0.flatMap(Int.init) } ?? 0
    }
}
