import Foundation
import HubIngest
import Logging
import Postgres

/// Stores command rows on its own thread and connection, in batches: whatever was saved
/// while one batch committed goes into the next, as one upsert of whole rows. Several saves
/// of one command before its batch starts become one row, the last.
///
/// A row the database refuses for its content (it should have been refused at the door)
/// is split out of its batch and reported to its caller; the other rows are stored, and
/// "unreachable" is reported only when the database is.
///
/// Bound: one pending row per command, and the hub holds at most
/// `maxPendingPerDevice` commands that are not final per device.
final class CommandWriter: @unchecked Sendable {
    typealias Done = @Sendable (Error?) -> Void

    /// Rows per upsert (10 parameters each, within libpq's 65,535).
    static let maxBatch = 2_000

    private struct Entry {
        var command: Command
        var isNew: Bool
        var done: [Done]
    }

    private let url: String
    private let logger: Logger
    private let condition = NSCondition()
    private var pending: [String: Entry] = [:]
    private var stopped = false
    private var thread: ServiceThread?

    init(url: String, logger: Logger) {
        self.url = url
        self.logger = logger
    }

    func start() {
        condition.withLock {
            guard thread == nil else { return }
            thread = ServiceThread.start(name: "hub-commands") { [self] in loop() }
        }
    }

    func save(_ command: Command, isNew: Bool, done: Done?) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else {
            done?(PostgresError(.connection, message: "the hub is stopping"))
            return
        }
        merge(Entry(command: command, isNew: isNew, done: done.map { [$0] } ?? []))
        condition.signal()
    }

    /// Writes what is pending (one try if the database is down) and stops the thread;
    /// returns once it has.
    func shutdown() async {
        let thread = condition.withLock {
            stopped = true
            condition.broadcast()
            return self.thread
        }
        await thread?.join()
    }

    /// Later saves win; waiters add up. Called with the lock held.
    private func merge(_ entry: Entry) {
        let id = entry.command.id
        if let earlier = pending[id] {
            pending[id] = Entry(command: entry.command, isNew: earlier.isNew || entry.isNew, done: earlier.done + entry.done)
        } else {
            pending[id] = entry
        }
    }

    private func loop() {
        var connection: PostgresConnection?
        var retryDelay = 0.1
        while true {
            condition.lock()
            while pending.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty || (stopped && retryDelay > 0.1) {
                // Stopping: what one more try could not store stays as it was in the database.
                let lost = pending.values
                pending = [:]
                condition.unlock()
                if !lost.isEmpty { logger.error("command changes not stored at stop", metadata: ["rows": "\(lost.count)"]) }
                for entry in lost { entry.done.forEach { $0(PostgresError(.connection, message: "the hub stopped")) } }
                connection?.close()
                return
            }
            var batch: [Entry] = []
            for key in pending.keys.prefix(Self.maxBatch) { batch.append(pending.removeValue(forKey: key)!) }
            condition.unlock()

            do {
                if connection?.isUsable != true { connection = try PostgresConnection(url: url) }
                let (refused, written) = try Self.store(batch.map(\.command), on: connection!)
                retryDelay = 0.1
                let standing = try Self.finalsStanding(batch.indices.compactMap { index in
                    let command = batch[index].command
                    return refused[index] == nil && command.status.isFinal && !written.contains(command.id) ? command.id : nil
                }, on: connection!)
                for (index, entry) in batch.enumerated() {
                    var error = refused[index].map { StorageFailure.refused($0.message) as Error }
                    if let error { logger.error("the database refused a command row; it keeps its stored state", metadata: ["command": "\(entry.command.id)", "error": "\(error)"]) }
                    if let stored = standing[entry.command.id] { error = CommandStoreError.alreadyFinal(stored) }
                    entry.done.forEach { $0(error) }
                }
            } catch {
                logger.warning("could not store command changes; retrying", metadata: ["rows": "\(batch.count)", "error": "\(error)"])
                if connection?.isConnected != true { connection = nil }
                condition.lock()
                for var entry in batch {
                    if entry.isNew {
                        // Nobody was told it exists: the caller gets the error.
                        entry.done.forEach { $0(StorageFailure(error)) }
                        continue
                    }
                    // Anything saved meanwhile is newer.
                    if let newer = pending[entry.command.id] { entry.command = newer.command; entry.done += newer.done }
                    pending[entry.command.id] = entry
                }
                condition.unlock()
                Thread.sleep(forTimeInterval: retryDelay)
                retryDelay = min(retryDelay * 2, 2)
            }
        }
    }

    /// Upserts `commands`. When the database refuses the batch for its content (not
    /// because it is away), the batch is split in halves and each is tried again, so every
    /// good row is stored and only the rows the database refuses on their own are left out.
    /// - Returns: per row, the refusal that kept it out, or `nil` once stored; and the ids
    ///   of the rows written (a row over a stored final state is not).
    /// - Throws: when the database is unreachable (the caller retries the whole batch).
    static func store(
        _ commands: [Command], on connection: PostgresConnection
    ) throws(PostgresError) -> (refused: [PostgresError?], written: Set<String>) {
        do {
            return (Array(repeating: nil, count: commands.count), try upsert(commands, on: connection))
        } catch where !error.isTransient && connection.isConnected {
            guard commands.count > 1 else { return ([error], []) }
            let middle = commands.count / 2
            let (first, second) = (try store(Array(commands[..<middle]), on: connection), try store(Array(commands[middle...]), on: connection))
            return (first.refused + second.refused, first.written.union(second.written))
        }
    }

    /// The stored rows of commands whose final state was not written, by id: the final
    /// states that stand instead.
    static func finalsStanding(_ ids: [String], on connection: PostgresConnection) throws(PostgresError) -> [String: Command] {
        guard !ids.isEmpty else { return [:] }
        let rows = try connection.query(
            "SELECT \(PostgresCommandStore.columns) FROM commands WHERE id = ANY($1::uuid[])", ["{" + ids.joined(separator: ",") + "}"]
        ).rows.map(PostgresCommandStore.command)
        return Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// One upsert of whole rows, every value a parameter of its own (no literal is built
    /// from client text). - Returns: the ids of the rows written.
    @discardableResult
    static func upsert(_ commands: [Command], on connection: PostgresConnection) throws(PostgresError) -> Set<String> {
        var parameters: [String?] = []
        parameters.reserveCapacity(commands.count * 10)
        var rows: [String] = []
        for (index, command) in commands.enumerated() {
            let n = index * 10
            rows.append("($\(n + 1)::uuid, $\(n + 2), $\(n + 3), $\(n + 4)::jsonb, $\(n + 5), $\(n + 6)::jsonb, $\(n + 7), "
                + "$\(n + 8)::bigint, $\(n + 9)::bigint, $\(n + 10)::bigint)")
            parameters += [
                command.id, command.device, command.name, command.paramsJSON, command.status.rawValue, command.resultJSON,
                command.error, String(command.createdMicros), String(command.updatedMicros), String(command.expiresMicros),
            ]
        }
        let written = try connection.query(
            """
            INSERT INTO commands (id, device_id, name, params, status, result, error, created_at, updated_at, expires_at)
            SELECT id, device, name, params, status, result, error,
                'epoch'::timestamptz + created * interval '1 microsecond',
                'epoch'::timestamptz + updated * interval '1 microsecond',
                'epoch'::timestamptz + expires * interval '1 microsecond'
            FROM (VALUES \(rows.joined(separator: ", "))) AS v(id, device, name, params, status, result, error, created, updated, expires)
            ON CONFLICT (id) DO UPDATE SET status = excluded.status, result = excluded.result, error = excluded.error,
                updated_at = excluded.updated_at
            -- A final state is never overwritten (in a cluster, two nodes may settle one command).
            WHERE commands.status NOT IN ('succeeded', 'failed', 'expired', 'timed_out', 'cancelled')
            RETURNING id::text
            """, parameters)
        return Set(written.rows.compactMap { $0[0] })
    }
}
