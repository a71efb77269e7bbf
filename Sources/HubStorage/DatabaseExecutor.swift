import Foundation
import HubIngest
import Logging
import Postgres
import ServiceLifecycle

/// Dedicated threads, each with its own connection, for control-plane queries
/// (registrations, lookups, commands, replays). Jobs start in the order they were queued;
/// with several threads they run concurrently, and PostgreSQL commits them together.
/// Callers await them without blocking an event loop.
///
/// Every statement has `statementTimeout` (PostgreSQL's `statement_timeout`), so no REST
/// call or replay can hold a connection for longer. Errors reach callers as
/// `StorageFailure`.
///
/// Bound: at most `maxPendingJobs` jobs wait; more fail at once with `busy`.
public final class DatabaseExecutor: @unchecked Sendable {
    public static let maxPendingJobs = 1024

    private let url: String
    private let statementTimeout: Duration?
    private let condition = NSCondition()
    private var jobs: [(PostgresConnection?) -> Void] = []
    private var stopped = false
    private var threads: [ServiceThread] = []

    /// - Parameters:
    ///   - threads: concurrent connections (default 4).
    ///   - statementTimeout: the longest one statement may run; `nil` for no limit.
    public init(url: String, name: String, threads: Int = 4, statementTimeout: Duration? = nil) {
        self.url = url
        self.statementTimeout = statementTimeout
        self.threads = (0..<max(1, threads)).map { index in
            ServiceThread.start(name: "\(name)-\(index)") { [self] in loop() }
        }
    }

    /// Runs `body` on the database thread, reconnecting first if needed.
    public func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let job: (PostgresConnection?) -> Void = { connection in
                guard let connection else {
                    continuation.resume(throwing: StorageFailure.unreachable)
                    return
                }
                continuation.resume(with: Result { try body(connection) }.mapError(StorageFailure.from))
            }
            condition.lock()
            guard !stopped, jobs.count < Self.maxPendingJobs else {
                condition.unlock()
                continuation.resume(throwing: StorageFailure.busy)
                return
            }
            jobs.append(job)
            condition.signal()
            condition.unlock()
        }
    }

    /// Queues `body` without waiting for it; `failed` hears its error (or the executor's
    /// refusal). For work nobody awaits, from any thread.
    public func submit(_ body: @escaping @Sendable (PostgresConnection) throws -> Void, failed: @escaping @Sendable (Error) -> Void) {
        let job: (PostgresConnection?) -> Void = { connection in
            guard let connection else { return failed(StorageFailure.unreachable) }
            do { try body(connection) } catch { failed(StorageFailure.from(error)) }
        }
        condition.lock()
        guard !stopped, jobs.count < Self.maxPendingJobs else {
            condition.unlock()
            failed(StorageFailure.busy)
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func connect() throws -> PostgresConnection {
        let connection = try PostgresConnection(url: url)
        if let statementTimeout {
            let millis = statementTimeout.components.seconds * 1000 + statementTimeout.components.attoseconds / 1_000_000_000_000_000
            try connection.execute("SET statement_timeout = \(max(1, millis))")
        }
        return connection
    }

    /// Runs the jobs already queued, refuses new ones, and returns once every thread has
    /// closed its connection. Later calls return at once.
    public func shutdown() async {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
        await threads.joinAll()
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
            if connection?.isUsable != true { connection = try? connect() }
            job(connection)
        }
    }
}

extension StorageFailure {
    /// What a libpq failure means to a client. SQLSTATE 57014 is a statement timeout;
    /// classes 22 (data exception), 23 (integrity) and 54 (program limit) are refusals of
    /// the value; a lost connection or a server going away is `unreachable`.
    public init(_ error: PostgresError) {
        switch error.sqlState {
        case "57014"?: self = .timeout
        case let state? where ["22", "23", "54"].contains(String(state.prefix(2))): self = .refused(error.message)
        default: self = error.isTransient ? .unreachable : .failed(error.description)
        }
    }

    /// Any error thrown by a storage call, as a `StorageFailure` (others pass unchanged).
    public static func from(_ error: Error) -> Error {
        switch error {
        case let error as PostgresError: StorageFailure(error)
        default: error
        }
    }
}

extension DatabaseExecutor: Service {
    /// Serves jobs until the graceful shutdown.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}
