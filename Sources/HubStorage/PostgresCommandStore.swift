import Foundation
import HubIngest
import Postgres

/// Commands in PostgreSQL's `commands` table, on the control-plane database thread.
public struct PostgresCommandStore: CommandStore {
    private let executor: DatabaseExecutor

    public init(executor: DatabaseExecutor) {
        self.executor = executor
    }

    static let columns = """
        id::text, device_id, name, params::text, status, result::text, error,
        (extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM updated_at) * 1000000)::bigint,
        (extract(epoch FROM expires_at) * 1000000)::bigint
        """

    public func create(device: String, name: String, paramsJSON: String, ttlSeconds: Int, maxPending: Int) async throws -> Command {
        let created = try await executor.run { connection in
            try connection.transaction { () throws(PostgresError) -> Command? in
                // Serialise creations per device so the bound holds.
                try connection.query("SELECT pg_advisory_xact_lock(hashtext($1))", [device])
                let pending = try connection.query(
                    "SELECT count(*) FROM commands WHERE device_id = $1 AND status IN ('queued', 'sent', 'delivered')", [device])
                guard (Int(pending.rows[0][0] ?? "0") ?? 0) < maxPending else { return nil }
                let row = try connection.query(
                    """
                    INSERT INTO commands (device_id, name, params, expires_at)
                    VALUES ($1, $2, $3::jsonb, now() + $4::int * interval '1 second')
                    RETURNING \(Self.columns)
                    """, [device, name, paramsJSON, String(ttlSeconds)]
                ).rows[0]
                return Self.command(row)
            }
        }
        guard let created else { throw CommandStoreError.tooManyPending }
        return created
    }

    public func command(id: String) async throws -> Command? {
        guard UUID(uuidString: id) != nil else { return nil }
        return try await executor.run { connection in
            try connection.query("SELECT \(Self.columns) FROM commands WHERE id = $1::uuid", [id]).rows.first.map(Self.command)
        }
    }

    public func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command] {
        try await executor.run { connection in
            try connection.query(
                """
                SELECT \(Self.columns) FROM commands WHERE device_id = $1 AND ($2::text IS NULL OR status = $2)
                ORDER BY created_at DESC, id LIMIT \(limit)
                """, [device, status?.rawValue]
            ).rows.map(Self.command)
        }
    }

    public func transition(
        id: String, device: String?, from: Set<CommandStatus>, to: CommandStatus, resultJSON: String?, error: String?
    ) async throws -> Command? {
        guard UUID(uuidString: id) != nil else { return nil }
        let states = "{" + from.map(\.rawValue).sorted().joined(separator: ",") + "}"
        return try await executor.run { connection in
            try connection.query(
                """
                UPDATE commands SET status = $3, result = COALESCE($4::jsonb, result), error = COALESCE($5, error), updated_at = now()
                WHERE id = $1::uuid AND ($2::text IS NULL OR device_id = $2) AND status = ANY($6::text[])
                RETURNING \(Self.columns)
                """, [id, device, to.rawValue, resultJSON, error, states]
            ).rows.first.map(Self.command)
        }
    }

    public func pending(device: String) async throws -> [Command] {
        try await executor.run { connection in
            try connection.query(
                """
                SELECT \(Self.columns) FROM commands
                WHERE device_id = $1 AND status IN ('queued', 'sent', 'delivered') AND expires_at > now()
                ORDER BY created_at, id
                """, [device]
            ).rows.map(Self.command)
        }
    }

    public func unfinished() async throws -> [Command] {
        try await executor.run { connection in
            try connection.query(
                "SELECT \(Self.columns) FROM commands WHERE status IN ('queued', 'sent', 'delivered')"
            ).rows.map(Self.command)
        }
    }

    static func command(_ row: [String?]) -> Command {
        Command(
            id: row[0]!, device: row[1]!, name: row[2]!, paramsJSON: row[3] ?? "{}",
            status: CommandStatus(rawValue: row[4]!) ?? .queued, resultJSON: row[5], error: row[6],
            createdMicros: Int64(row[7]!) ?? 0, updatedMicros: Int64(row[8]!) ?? 0, expiresMicros: Int64(row[9]!) ?? 0)
    }
}
