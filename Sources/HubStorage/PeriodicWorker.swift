import Foundation
import HubIngest
import Postgres

/// Runs a round of database work on its own thread and connection: at start, then every
/// `interval`, until stopped; at once again while a round says more work is waiting. A
/// failed round drops a broken connection and the next round reconnects.
final class PeriodicWorker: @unchecked Sendable {
    private let name: String
    private let url: String
    private let interval: Duration
    /// Returns whether more work is waiting.
    private let round: (PostgresConnection) throws -> Bool
    private let failed: (Error, _ firstInARow: Bool) -> Void
    private let clock: any HubClock
    private let condition = NSCondition()
    private var stopped = false
    private var thread: ServiceThread?

    init(
        name: String, url: String, interval: Duration, round: @escaping (PostgresConnection) throws -> Bool,
        failed: @escaping (Error, _ firstInARow: Bool) -> Void, clock: any HubClock
    ) {
        self.clock = clock
        self.name = name
        self.url = url
        self.interval = interval
        self.round = round
        self.failed = failed
    }

    func start() {
        condition.withLock {
            guard thread == nil else { return }
            thread = ServiceThread.start(name: name) { [self] in loop() }
        }
    }

    /// Stops after the round in progress; returns once the thread has.
    func stop() async {
        let thread = condition.withLock {
            stopped = true
            condition.broadcast()
            return self.thread
        }
        await thread?.join()
    }

    private func loop() {
        var connection: PostgresConnection?
        var failing = false
        while !condition.withLock({ stopped }) {
            do {
                if connection?.isUsable != true { connection = try PostgresConnection(url: url) }
                let more = try round(connection!)
                failing = false
                if more { continue }
            } catch {
                failed(error, !failing)
                failing = true
                if connection?.isConnected != true { connection = nil }
            }
            condition.withLock { if !stopped { clock.wait(on: condition, for: interval) } }
        }
        connection?.close()
    }
}
