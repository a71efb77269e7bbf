import Foundation
import HubIngest
import Logging
import Postgres

/// Stores command rows on its own thread and connection, in batches: whatever was saved
/// while one batch committed goes into the next, as one upsert of whole rows. Several saves
/// of one command before its batch starts become one row, the last.
///
/// Bound: one pending row per command, and the hub holds at most
/// `maxPendingPerDevice` commands that are not final per device.
final class CommandWriter: @unchecked Sendable {
    typealias Done = @Sendable (Error?) -> Void

    /// Rows per upsert.
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
    private var finished = false

    init(url: String, logger: Logger) {
        self.url = url
        self.logger = logger
        let thread = Thread { [self] in loop() }
        thread.name = "hub-commands"
        thread.start()
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

    /// Writes what is pending (one try if the database is down) and stops the thread.
    func shutdown() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
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
                finished = true
                condition.broadcast()
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
                if connection?.isConnected != true { connection = try PostgresConnection(url: url) }
                try Self.upsert(batch.map(\.command), on: connection!)
                retryDelay = 0.1
                for entry in batch { entry.done.forEach { $0(nil) } }
            } catch {
                logger.warning("could not store command changes; retrying", metadata: ["rows": "\(batch.count)", "error": "\(error)"])
                if connection?.isConnected != true { connection = nil }
                condition.lock()
                for var entry in batch {
                    if entry.isNew {
                        // Nobody was told it exists: the caller gets the error.
                        entry.done.forEach { $0(error) }
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

    static func upsert(_ commands: [Command], on connection: PostgresConnection) throws(PostgresError) {
        func texts(_ values: [String?]) -> String {
            arrayLiteral(values.map { $0.map(arrayElement) ?? "NULL" })
        }
        try connection.query(
            """
            INSERT INTO commands (id, device_id, name, params, status, result, error, created_at, updated_at, expires_at)
            SELECT id::uuid, device, name, params::jsonb, status, result::jsonb, error,
                'epoch'::timestamptz + created * interval '1 microsecond',
                'epoch'::timestamptz + updated * interval '1 microsecond',
                'epoch'::timestamptz + expires * interval '1 microsecond'
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                        $8::bigint[], $9::bigint[], $10::bigint[])
                AS v(id, device, name, params, status, result, error, created, updated, expires)
            ON CONFLICT (id) DO UPDATE SET status = excluded.status, result = excluded.result, error = excluded.error,
                updated_at = excluded.updated_at
            """,
            [
                texts(commands.map(\.id)), texts(commands.map(\.device)), texts(commands.map(\.name)),
                texts(commands.map(\.paramsJSON)), texts(commands.map(\.status.rawValue)), texts(commands.map(\.resultJSON)),
                texts(commands.map(\.error)), arrayLiteral(commands.map { String($0.createdMicros) }),
                arrayLiteral(commands.map { String($0.updatedMicros) }), arrayLiteral(commands.map { String($0.expiresMicros) }),
            ])
    }
}
