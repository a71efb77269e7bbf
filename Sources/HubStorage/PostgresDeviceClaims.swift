import Foundation
import HubIngest
import Logging
import Metrics
import Postgres
import ServiceLifecycle

/// Claims devices for this node in PostgreSQL (cluster mode), in rounds on a thread and
/// connection of its own, so a reconnect storm costs few transactions.
///
/// A round takes every claim waiting (up to `maxRound`). It reads which other nodes own
/// those devices, asks them to drain (`NodeDrain`, bounded by `drainTimeout`), then claims
/// them all in one statement: session + 1, owner = this node, and the mark read back. A
/// node that did not drain in time is fenced: its later writes for the device roll back.
///
/// Memory: at most `maxPending` claims wait (each a device reference and a callback); a
/// claim past it fails at once with `overloaded`.
public final class PostgresDeviceClaims: DeviceClaims, @unchecked Sendable {
    public struct Settings: Sendable {
        public var node: String
        public var maxPending = 10_000
        public var maxRound = 1_000
        /// How long a round waits for other nodes to drain before it claims anyway.
        public var drainTimeout: Duration = .seconds(1)
        /// How long a claim may wait for the database before it fails (`unavailable`).
        public var timeout: Duration = .seconds(5)

        public init(node: String) { self.node = node }
    }

    private struct Pending {
        let device: DeviceRecordRef
        let remote: String
        let since: UInt64
        let completion: @Sendable (Result<DeviceClaim, ClaimFailure>) -> Void
    }

    private let url: String
    private let settings: Settings
    private let drain: any NodeDrain
    private let clock: any HubClock
    private let logger: Logger
    private let condition = NSCondition()
    private var pending: [Pending] = []
    private var stopped = false
    private var thread: ServiceThread?
    private var roundsRun = 0
    private let claimRounds = Counter(label: "hub_device_claim_rounds_total")
    private let claimsMade = Counter(label: "hub_device_claims_total")

    /// Rounds that reached the database since start: each one is a drain lookup and one claim statement.
    public var rounds: Int { condition.withLock { roundsRun } }

    public init(url: String, settings: Settings, drain: any NodeDrain, clock: any HubClock, logger: Logger) {
        self.url = url
        self.settings = settings
        self.drain = drain
        self.clock = clock
        self.logger = logger
    }

    public func claim(
        _ device: DeviceRecordRef, remote: String, completion: @escaping @Sendable (Result<DeviceClaim, ClaimFailure>) -> Void
    ) {
        let refused: ClaimFailure? = condition.withLock {
            if stopped { return .stopping }
            if pending.count >= settings.maxPending { return .overloaded }
            pending.append(Pending(device: device, remote: remote, since: clock.uptimeNanos(), completion: completion))
            condition.signal()
            return nil
        }
        if let refused { completion(.failure(refused)) }
    }

    public func start() {
        condition.withLock {
            guard thread == nil else { return }
            thread = ServiceThread.start(name: "hub-claims") { [self] in loop() }
        }
    }

    /// Fails what waits and stops the thread; returns once it has.
    public func stop() async {
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
        while true {
            let round: [Pending] = condition.withLock {
                while pending.isEmpty && !stopped { condition.wait() }
                let count = stopped ? pending.count : min(pending.count, settings.maxRound)
                defer { pending.removeFirst(count) }
                return Array(pending.prefix(count))
            }
            if condition.withLock({ stopped }) {
                round.forEach { $0.completion(.failure(.stopping)) }
                break
            }
            do {
                if connection?.isUsable != true { connection = try PostgresConnection(url: url) }
                try claim(round, on: connection!)
                if failing { logger.info("device claims recovered") }
                failing = false
            } catch {
                if !failing { logger.error("device claims failing; retrying", metadata: ["error": "\(error)"]) }
                failing = true
                if connection?.isConnected != true { connection = nil }
                let limit = settings.timeout.nanoseconds
                let now = clock.uptimeNanos()
                let (expired, retry) = (round.filter { now &- $0.since >= limit }, round.filter { now &- $0.since < limit })
                expired.forEach { $0.completion(.failure(.unavailable("\(error)"))) }
                condition.withLock {
                    pending.insert(contentsOf: retry, at: 0)
                    if !stopped { clock.wait(on: condition, for: .milliseconds(100)) }
                }
            }
        }
        connection?.close()
    }

    /// One round: drain other owners, then claim every device in one statement.
    private func claim(_ round: [Pending], on connection: PostgresConnection) throws(PostgresError) {
        // The newest connection of a device wins; an older one in the same round is replaced anyway.
        var newest: [Int32: Pending] = [:]
        for claim in round {
            if let older = newest[claim.device.key] { older.completion(.failure(.superseded)) }
            newest[claim.device.key] = claim
        }
        let keys = arrayLiteral(newest.keys.sorted().map(String.init))
        let owners = try connection.query(
            "SELECT owner, id, session FROM device_registry WHERE key = ANY($1::int[]) AND owner IS NOT NULL AND owner <> $2",
            [keys, settings.node]
        ) { row in (row.string(0) ?? "", DrainItem(device: row.string(1) ?? "", session: row.int64(2) ?? 0)) }
        if !owners.isEmpty {
            drain.drain(Dictionary(grouping: owners, by: \.0).mapValues { $0.map(\.1) }, timeoutNanos: settings.drainTimeout.nanoseconds)
        }
        let claims = newest.values.sorted { $0.device.key < $1.device.key }
        let claimed = try connection.query(
            """
            UPDATE device_registry d SET session = d.session + 1, owner = $3, remote = v.remote, last_seen = now()
            FROM unnest($1::int[], $2::text[]) AS v(key, remote)
            WHERE d.key = v.key
            RETURNING d.key, d.session, d.last_seq
            """,
            [arrayLiteral(claims.map { String($0.device.key) }), arrayLiteral(claims.map { arrayElement($0.remote) }), settings.node]
        ) { row in (Int32(row.int64(0) ?? 0), DeviceClaim(session: row.int64(1) ?? 0, mark: UInt64(max(0, row.int64(2) ?? 0)))) }
        condition.withLock { roundsRun += 1 }
        claimRounds.increment()
        claimsMade.increment(by: Int64(claimed.count))
        let byKey = Dictionary(claimed, uniquingKeysWith: { first, _ in first })
        for claim in claims {
            if let result = byKey[claim.device.key] {
                claim.completion(.success(result))
            } else {
                claim.completion(.failure(.unknownDevice))
            }
        }
    }

}

extension PostgresDeviceClaims: Service {
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await stop()
    }
}
