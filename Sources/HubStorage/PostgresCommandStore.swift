import Foundation
import HubIngest
import Logging
import Postgres
import ServiceLifecycle

/// Commands in PostgreSQL's `commands` table: changes go through a batching writer
/// thread, reads through the control-plane executor.
public final class PostgresCommandStore: CommandStore {
    private let executor: DatabaseExecutor
    private let writer: CommandWriter

    public init(url: String, executor: DatabaseExecutor, logger: Logger) {
        self.executor = executor
        writer = CommandWriter(url: url, logger: logger)
    }

    static let columns = """
        id::text, device_id, name, params::text, status, result::text, error,
        (extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM updated_at) * 1000000)::bigint,
        (extract(epoch FROM expires_at) * 1000000)::bigint
        """

    public func save(_ command: Command, isNew: Bool, done: (@Sendable (Error?) -> Void)?) {
        writer.save(command, isNew: isNew, done: done)
    }

    /// Starts the writer thread.
    public func start() {
        writer.start()
    }

    /// Stores what is pending and stops the writer thread; returns once it has.
    public func shutdown() async {
        await writer.shutdown()
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

    public func unfinished() async throws -> [Command] {
        try await executor.run { connection in
            try connection.query(
                "SELECT \(Self.columns) FROM commands WHERE status IN ('queued', 'sent', 'delivered') ORDER BY created_at, id"
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

extension PostgresCommandStore: Service {
    /// Writes command rows until the graceful shutdown, then what is pending.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }
}
