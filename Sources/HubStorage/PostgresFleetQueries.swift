import HubIngest
import Postgres

/// The fleet summary's counts and a device's rejected frames, on the control-plane
/// database threads. Each reads through an index: `rejected_frames_received` for the last
/// hour, `commands_pending` (partial) for commands not final, `rejected_frames_device`
/// for one device.
public struct PostgresFleetQueries: FleetQueries {
    private let executor: DatabaseExecutor

    public init(executor: DatabaseExecutor) {
        self.executor = executor
    }

    public func rejected(deviceID: String, limit: Int) async throws -> [RejectedFrameRow] {
        try await executor.run { connection in
            try connection.query(
                """
                SELECT (extract(epoch FROM received_at) * 1000000)::bigint, reason, seq, octet_length(payload)
                FROM rejected_frames WHERE device_id = $1
                ORDER BY received_at DESC LIMIT $2
                """, [deviceID, String(limit)]
            ) { row in
                RejectedFrameRow(
                    receivedMicros: row.int64(0) ?? 0, reason: row.string(1) ?? "", seq: row.int64(2), bytes: Int(row.int64(3) ?? 0))
            }
        }
    }

    public func counts(rejectedSinceMicros since: Int64) async throws -> FleetCounts {
        try await executor.run { connection in
            let reasons = try connection.query(
                """
                SELECT split_part(reason, ':', 1), count(*) FROM rejected_frames
                WHERE received_at >= to_timestamp($1::bigint / 1000000.0) GROUP BY 1
                """, [String(since)]
            ) { row in (row.string(0) ?? "", Int(row.int64(1) ?? 0)) }
            let pending = try connection.query(
                "SELECT count(*) FROM commands WHERE status IN ('queued', 'sent', 'delivered')"
            ) { row in Int(row.int64(0) ?? 0) }
            return FleetCounts(rejectedByReason: Dictionary(reasons, uniquingKeysWith: +), commandsPending: pending.first ?? 0)
        }
    }
}
