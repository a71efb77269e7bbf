import Foundation
import Logging
import Postgres

/// Dedicated threads, each with its own connection, for control-plane queries
/// (registrations, lookups, commands, replays). Jobs start in the order they were queued;
/// with several threads they run concurrently, and PostgreSQL commits them together.
/// Callers await them without blocking an event loop.
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

    /// - Parameter threads: concurrent connections (default 4).
    public init(url: String, name: String, threads: Int = 4) {
        self.url = url
        for index in 0..<max(1, threads) {
            let thread = Thread { [self] in loop() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
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
        var connection: PostgresConnection?
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
            if connection?.isConnected != true { connection = try? PostgresConnection(url: url) }
            job(connection)
        }
    }
}
