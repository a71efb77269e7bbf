import Foundation
import HubIngest
import Logging
import Metrics
import Postgres
import ServiceLifecycle

/// The PostgreSQL advisory locks the hub takes with the two-key form, `("hub_", job)`, so
/// `pg_locks` shows each as `classid`, `objid` (`objsubid` 2). The schema's apply and the
/// rollup fold use one-key locks (`Schema`, `RollupFolder`), which never collide with these.
enum AdvisoryLock {
    static let hub: Int32 = 0x6875_625f  // "hub_"
    /// Partition upkeep and retention (`PartitionManager`): one node at a time.
    static let partitions: Int32 = 0x7061_7274  // "part"
    /// Settling the commands of devices connected to no node (`AdvisoryLease`).
    static let commandExpiry: Int32 = 0x6578_7069  // "expi"

    /// Takes the session lock if it is free. - Returns: whether this session holds it.
    static func tryLock(_ job: Int32, on connection: PostgresConnection) throws(PostgresError) -> Bool {
        try connection.query("SELECT pg_try_advisory_lock(\(hub), \(job))").rows.first?[0] == "t"
    }

    static func unlock(_ job: Int32, on connection: PostgresConnection) {
        if connection.isConnected { _ = try? connection.query("SELECT pg_advisory_unlock(\(hub), \(job))") }
    }
}

/// A cluster-wide job that one node at a time does: this node does it while its own
/// connection holds the job's advisory lock. Every `interval` it checks that its session
/// still holds the lock, or tries to take it; a lost connection loses the lock (PostgreSQL
/// releases it with the session), and another node takes it at its next try. For up to
/// one `interval` after a connection is cut, two nodes may both believe they hold it, so
/// the job must be safe to do twice (the command writer never overwrites a final state).
public final class AdvisoryLease: Service, @unchecked Sendable {
    private let job: Int32
    private let name: String
    private let logger: Logger
    private let lock = NSLock()
    private var held = false
    /// `hub_cluster_lease_held{lease="…"}`: 1 while this node holds it.
    private let gauge: Gauge
    private var worker: PeriodicWorker!

    /// The lease on settling commands of devices connected to no node. Its connection is
    /// named after `node` (`application_name`), so that the other nodes can end it once
    /// `node` is taken as dead (`endLeases(of:on:)`): a stopped process keeps its sockets
    /// open, and would hold the lock until it resumed.
    public static func commandExpiry(
        url: String, node: String, interval: Duration = .seconds(1), clock: any HubClock, logger: Logger
    ) -> AdvisoryLease {
        AdvisoryLease(
            job: AdvisoryLock.commandExpiry, name: "command_expiry", url: named(url, applicationName(node)), interval: interval,
            clock: clock, logger: logger)
    }

    /// Ends the lease connections of a node taken as dead, releasing what they hold; the
    /// node, if it was only stopped, finds its lease gone at its next check.
    /// - Returns: how many connections were ended.
    @discardableResult
    public static func endLeases(of node: String, on connection: PostgresConnection) throws(PostgresError) -> Int {
        try connection.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            [applicationName(node)]
        ).rows.count
    }

    /// PostgreSQL keeps the first 63 bytes of an `application_name`.
    static func applicationName(_ node: String) -> String {
        String(("hub-lease-" + node).utf8.prefix(63))!
    }

    /// `url` with `application_name` set: a `postgresql://` URI gets a query parameter,
    /// a `key=value` connection string one more pair. (Node ids are letters, digits, `-`
    /// and `_`, which need no escaping in either.)
    static func named(_ url: String, _ name: String) -> String {
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return url + (url.contains("?") ? "&" : "?") + "application_name=" + name
        }
        return url + " application_name=" + name
    }

    init(job: Int32, name: String, url: String, interval: Duration, clock: any HubClock, logger: Logger) {
        self.job = job
        self.name = name
        self.logger = logger
        gauge = Gauge(label: "hub_cluster_lease_held", dimensions: [("lease", name)])
        gauge.record(0)
        worker = PeriodicWorker(
            name: "hub-lease", url: url, interval: interval,
            round: { [weak self] connection in
                guard let self else { return false }
                // Asked of the session itself, so a connection replaced between rounds is
                // never taken for the one that held the lock.
                let holds = try connection.query(
                    """
                    SELECT CASE WHEN EXISTS (
                        SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                            AND classid = \(AdvisoryLock.hub) AND objid = \(job) AND objsubid = 2 AND granted)
                    THEN true ELSE pg_try_advisory_lock(\(AdvisoryLock.hub), \(job)) END
                    """
                ).rows.first?[0] == "t"
                self.setHeld(holds)
                return false
            },
            failed: { [weak self] error, first in
                self?.setHeld(false)
                if first { logger.warning("could not check a cluster lease; not holding it", metadata: ["lease": "\(name)", "error": "\(error)"]) }
            },
            clock: clock)
    }

    /// Whether this node holds the lease now.
    public var isHeld: Bool { lock.withLock { held } }

    private func setHeld(_ value: Bool) {
        let changed = lock.withLock {
            defer { held = value }
            return held != value
        }
        gauge.record(value ? 1 : 0)
        if changed { logger.info(value ? "cluster lease taken" : "cluster lease given up", metadata: ["lease": "\(name)"]) }
    }

    /// Holds or tries the lease until the graceful shutdown; the lock goes with the connection.
    public func run() async throws {
        worker.start()
        try? await gracefulShutdown()
        await worker.stop()
        setHeld(false)
    }
}
