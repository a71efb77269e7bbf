import Foundation
import HubIngest
import Logging
import Postgres

/// Keeps the in-memory registry in step with devices changed outside this process (for
/// example `hub devices add` while the hub runs), through `LISTEN hub_devices`.
public final class DeviceChangeListener: @unchecked Sendable {
    private let url: String
    private let registry: DeviceRegistry
    private let logger: Logger
    private let onRevoked: @Sendable (any DeviceConnection) -> Void
    private let metrics: MetricCatalog?
    private let lock = NSLock()
    private var stopped = false
    private var schemaApplied: Bool

    /// - Parameters:
    ///   - metrics: loaded (again) whenever the devices are, so the metric-name limits
    ///     count what storage holds.
    ///   - schemaApplied: false if the database was unreachable at start; the listener then
    ///     applies the schema on its first connection, before loading the devices.
    ///   - onRevoked: called with a live connection whose device was deleted, disabled or
    ///     given a new token.
    public init(
        url: String, registry: DeviceRegistry, metrics: MetricCatalog? = nil, schemaApplied: Bool = true, logger: Logger,
        onRevoked: @escaping @Sendable (any DeviceConnection) -> Void
    ) {
        self.metrics = metrics
        self.url = url
        self.schemaApplied = schemaApplied
        self.registry = registry
        self.logger = logger
        self.onRevoked = onRevoked
    }

    public func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "hub-device-listener"
        thread.start()
    }

    public func stop() {
        lock.withLock { stopped = true }
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
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }
}
