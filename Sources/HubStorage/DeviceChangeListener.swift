import Foundation
import HubIngest
import Logging
import Postgres
import ServiceLifecycle

/// Keeps the in-memory registry in step with devices changed outside this process (for
/// example `hub devices add` while the hub runs), through `LISTEN hub_devices`.
public final class DeviceChangeListener: @unchecked Sendable {
    private let url: String
    private let registry: DeviceRegistry
    private let logger: Logger
    private let onRevoked: @Sendable (any DeviceConnection) -> Void
    private let metrics: MetricCatalog?
    private let clock: any HubClock
    private let lock = NSCondition()
    private var stopped = false
    private var thread: ServiceThread?
    private var schemaApplied: Bool

    /// - Parameters:
    ///   - metrics: loaded (again) whenever the devices are, so the metric-name limits
    ///     count what storage holds.
    ///   - schemaApplied: false if the database was unreachable at start; the listener then
    ///     applies the schema on its first connection, before loading the devices.
    ///   - onRevoked: called with a live connection whose device was deleted, disabled or
    ///     given a new token.
    public init(
        url: String, registry: DeviceRegistry, metrics: MetricCatalog? = nil, schemaApplied: Bool = true,
        clock: any HubClock = SystemClock(), logger: Logger, onRevoked: @escaping @Sendable (any DeviceConnection) -> Void
    ) {
        self.clock = clock
        self.metrics = metrics
        self.url = url
        self.schemaApplied = schemaApplied
        self.registry = registry
        self.logger = logger
        self.onRevoked = onRevoked
    }

    public func start() {
        lock.withLock {
            guard thread == nil else { return }
            thread = ServiceThread.start(name: "hub-device-listener") { [self] in loop() }
        }
    }

    /// Stops within one wait for notifications (500 ms); returns once the thread has.
    public func stop() async {
        let thread = lock.withLock {
            stopped = true
            lock.broadcast()
            return self.thread
        }
        await thread?.join()
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func loop() {
        var connection: PostgresConnection?
        var warned = false
        while !isStopped {
            do {
                if connection == nil || !(connection!.isConnected) {
                    let fresh = try PostgresConnection(url: url)
                    if !schemaApplied {
                        try Schema.apply(on: fresh)
                        schemaApplied = true
                        logger.notice("database reachable: schema applied, devices loaded")
                    }
                    try fresh.listen("hub_devices")
                    connection = fresh
                    // Catch up on anything changed while not listening.
                    if let metrics { try DeviceStore(connection: fresh).loadMetrics(into: metrics) }
                    registry.load(try DeviceStore(connection: fresh).loadAll())
                    warned = false
                }
                let changed = Set(try connection!.notifications(timeoutMilliseconds: 500).map(\.payload))
                guard !changed.isEmpty else { continue }
                let store = DeviceStore(connection: connection!)
                for id in changed {
                    if let record = try store.record(id: id) {
                        if let revoked = registry.upsert(record) { onRevoked(revoked) }
                    } else if let removed = registry.remove(id: id) {
                        onRevoked(removed)
                    }
                }
            } catch {
                // Once per outage, not once per retry.
                if connection != nil || !warned {
                    logger.warning("device change listener lost its connection; retrying every second", metadata: ["error": "\(error)"])
                    warned = true
                }
                connection = nil
                lock.withLock { if !stopped { clock.wait(on: lock, for: .seconds(1)) } }
            }
        }
    }
}

extension DeviceChangeListener: Service {
    /// Listens until the graceful shutdown.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await stop()
    }
}
