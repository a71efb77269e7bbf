import Foundation
import Logging
import Postgres

/// A dedicated thread with its own connection for control-plane queries (registrations,
/// lookups). Jobs run one at a time in order; callers await them without blocking a loop.
///
/// Bound: at most `maxPendingJobs` jobs wait; more fail at once with `busy`.
public final class DatabaseExecutor: @unchecked Sendable {
    public struct Busy: Error, CustomStringConvertible {
        public var description: String { "the database queue is full" }
    }

    public static let maxPendingJobs = 1024

    private let url: String
    private let condition = NSCondition()
    private var jobs: [(PostgresConnection?) -> Void] = []
    private var stopped = false
    private var connection: PostgresConnection?

    public init(url: String, name: String) {
        self.url = url
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.start()
    }

    /// Runs `body` on the database thread, reconnecting first if needed.
    public func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let job: (PostgresConnection?) -> Void = { connection in
                guard let connection else {
                    continuation.resume(throwing: PostgresError(.connection, message: "database unreachable"))
                    return
                }
                continuation.resume(with: Result { try body(connection) })
            }
            condition.lock()
            guard !stopped, jobs.count < Self.maxPendingJobs else {
                condition.unlock()
                continuation.resume(throwing: Busy())
                return
            }
            jobs.append(job)
            condition.signal()
            condition.unlock()
        }
    }

    public func shutdown() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty && stopped {
                condition.unlock()
                connection?.close()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job(liveConnection())
        }
    }

    private func liveConnection() -> PostgresConnection? {
        if let connection, connection.isConnected { return connection }
        connection = try? PostgresConnection(url: url)
        return connection
    }
}
