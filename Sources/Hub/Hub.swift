import Foundation
import HubIngest
import HubStorage
import HubTransport
import Logging
import NIOConcurrencyHelpers
import Postgres
import ServiceLifecycle

/// The composition root: builds a whole hub from a `HubConfiguration` and runs its parts
/// as one service group.
///
/// The services start in dependency order: partition upkeep, the rollup fold, the
/// device-change listener, the database executors, the command writer, the ingest writer,
/// the request runner, the command center, the server. Shutdown runs in reverse and loses no accepted frame:
/// the server stops reading, the ingest writer commits and acks what was read, sockets
/// close with 1001, then each part behind it stops, and the embedded cluster last.
public final class Hub: Sendable {
    public let configuration: HubConfiguration
    public let database: DatabaseTarget
    public let registry: DeviceRegistry
    public let apiToken: String
    private let writer: IngestWriter
    private let partitions: PartitionManager
    private let group: ServiceGroup
    private let logger: Logger
    private let state = NIOLockedValueBox(RunState())

    private struct RunState {
        var port: Int?
        var failure: Error?
        var run: Task<Void, Never>?
    }

    /// The bound port (useful with port 0).
    public var port: Int { state.withLockedValue { $0.port } ?? configuration.server.port }

    /// Starts a hub; returns once it accepts connections.
    /// - Parameter clock: the time every part reads (tests pass a `ManualClock`).
    public static func start(_ configuration: HubConfiguration, logger: Logger, clock: any HubClock = SystemClock()) async throws -> Hub {
        try APIToken.check(configuration.apiToken, flag: "--api-token")
        try APIToken.check(configuration.readToken, flag: "--read-token")
        if let cluster = configuration.cluster {
            guard configuration.databaseURL != nil else { throw ClusterConfigurationError(description: "--cluster needs --database-url: the nodes share one PostgreSQL") }
            guard ClusterConfiguration.isValidNodeID(cluster.nodeID) else {
                throw ClusterConfigurationError(description: "--node-id must be 1 to 64 of A-Z, a-z, 0-9, - and _")
            }
        }
        try DataFolder.prepare(
            configuration.dataDirectory, owner: configuration.databaseURL == nil ? EmbeddedPostgres.serviceUserIfRoot() : nil)
        let database = try await Task.detached {
            try DatabaseTarget(
                databaseURL: configuration.databaseURL, clusterDirectory: configuration.clusterDirectory,
                logger: logger, timeout: configuration.databaseStartupTimeout, clock: clock)
        }.value
        let (ports, announce) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .bufferingNewest(1))
        let hub: Hub
        do {
            hub = try await Hub(configuration: configuration, database: database, clock: clock, logger: logger) { port in
                announce.yield(port)
                announce.finish()
            }
        } catch {
            database.stop()
            throw error
        }
        hub.launch(finished: announce)
        guard let port = await ports.first(where: { _ in true }) else {
            await hub.stop()
            throw hub.state.withLockedValue { $0.failure } ?? CancellationError()
        }
        hub.state.withLockedValue { $0.port = port }
        if configuration.server.autoProvision {
            logger.warning("auto-provisioning is on: any well-formed device id may connect without a token")
        }
        return hub
    }

    private init(
        configuration: HubConfiguration, database: DatabaseTarget, clock: any HubClock, logger: Logger,
        bound: @escaping @Sendable (Int) -> Void
    ) async throws {
        self.configuration = configuration
        self.database = database
        self.logger = logger
        apiToken = try configuration.apiToken ?? APIToken.loadOrCreate(in: configuration.dataDirectory)

        let registry = DeviceRegistry(autoProvision: configuration.server.autoProvision)
        let metricCatalog = MetricCatalog(limits: configuration.metricLimits)
        if database.reachableAtStart {
            let store = DeviceStore(connection: try PostgresConnection(url: database.url))
            try store.loadMetrics(into: metricCatalog)
            registry.load(try store.loadAll())
        }
        self.registry = registry

        let partitions = PartitionManager(url: database.url, settings: configuration.storage, clock: clock, logger: logger)
        if database.reachableAtStart {
            // Partitions for now and ahead exist before the first frame arrives.
            try partitions.runOnce(on: PostgresConnection(url: database.url), nowSeconds: clock.wallMicros() / 1_000_000, logger: logger)
        }
        self.partitions = partitions
        let rollups = RollupFolder(url: database.url, clock: clock, logger: logger)

        let queue = IngestQueue(capacityRows: configuration.queueCapacityRows, lanes: configuration.ingestWriters)
        let executor = DatabaseExecutor(url: database.url, name: "hub-database", statementTimeout: configuration.statementTimeout)
        let history = PostgresTelemetryHistory(
            executor: executor, rollupRetentionDays: configuration.storage.rollupRetentionDays,
            pageRows: PostgresTelemetryHistory.pageRows(maxFrameBytes: configuration.server.maxFrameBytes))
        let cluster = try configuration.cluster.map { settings in
            try ClusterNode(
                configuration: settings, registry: registry, queue: queue, history: history, clock: clock, logger: logger
            ) { [logger] node in
                executor.submit({
                    _ = try $0.query("UPDATE device_registry SET owner = NULL WHERE owner = $1", [node])
                    try AdvisoryLease.endLeases(of: node, on: $0)
                }) { error in
                    logger.warning("cluster: could not clear a dead node's ownership or end its lease", metadata: ["node": "\(node)", "error": "\(error)"])
                }
            }
        }
        let claims = cluster.map { cluster in
            var settings = PostgresDeviceClaims.Settings(node: cluster.configuration.nodeID)
            settings.drainTimeout = cluster.configuration.drainTimeout
            return PostgresDeviceClaims(url: database.url, settings: settings, drain: cluster, clock: clock, logger: logger)
        }

        let metrics = IngestMetrics()
        let writer = IngestWriter(
            queue: queue, sinks: (0..<queue.laneCount).map { _ in PostgresIngestSink(url: database.url, fencing: cluster != nil) },
            registry: registry,
            configuration: .init(policy: FlushPolicy(
                maxRows: configuration.batchRows,
                maxDelayNanos: configuration.flushInterval.nanoseconds)),
            logger: logger, metrics: metrics, clock: clock)
        self.writer = writer

        let listener = DeviceChangeListener(
            url: database.url, registry: registry, metrics: metricCatalog, schemaApplied: database.reachableAtStart, clock: clock,
            logger: logger
        ) { connection in
            connection.close(.revoked)
        }

        // Readiness has a connection of its own: it never waits behind REST or replays.
        let probe = DatabaseExecutor(url: database.url, name: "hub-readiness", threads: 1, statementTimeout: .seconds(2))
        let commandStore = PostgresCommandStore(url: database.url, executor: executor, logger: logger)
        let tokens = APITokens(full: apiToken, readOnly: configuration.readToken)
        let fanout = LiveFanout(
            link: cluster, maxFanoutDeliveries: configuration.server.maxFanoutDeliveries, maxFanoutBytes: configuration.server.maxFanoutBytes)
        // Commands of devices connected to no node expire on one node at a time.
        let expiryLease = cluster.map {
            AdvisoryLease.commandExpiry(url: database.url, node: $0.configuration.nodeID, clock: clock, logger: logger)
        }
        var settlesAway: (@Sendable (String) -> Bool)?
        if let expiryLease, let cluster {
            // Only while it hears the others: cut off, it would take their devices for offline.
            settlesAway = { [registry] device in
                guard expiryLease.isHeld, cluster.isConnected else { return false }
                guard let key = registry.record(id: device)?.key else { return true }
                return fanout.isOnline(key: key) != true
            }
        }
        let commands = CommandCenter(
            store: commandStore, fanout: fanout, settings: .init(configuration: configuration.server), clock: clock, logger: logger,
            relay: cluster, settlesAway: settlesAway)
        cluster?.attach(fanout, commands: commands)
        let runner = RequestRunner()
        let core = HubCore(
            configuration: configuration.server, registry: registry, metricCatalog: metricCatalog, queue: queue, metrics: metrics,
            tokens: tokens,
            history: history,
            fanout: fanout, commands: commands, runner: runner, clock: clock, logger: logger, claims: claims)
        let server = HubServer(
            core: core, tokens: tokens, admin: PostgresDeviceAdmin(executor: executor),
            queries: PostgresTelemetryQueries(executor: executor), fleet: PostgresFleetQueries(executor: executor), logger: logger,
            provision: { id in try await executor.run { try DeviceStore(connection: $0).provision(id: id) } },
            metricsText: { [queue, registry] in
                HubMetrics.queueDepth.record(queue.depth)
                HubMetrics.queueCapacity.record(queue.capacityRows)
                HubMetrics.ready.record(Hub.knownUnready(writer: writer, registry: registry, cluster: cluster) == nil ? 1 : 0)
                return HubMetrics.text()
            },
            readiness: { [registry] in await Hub.readiness(writer: writer, probe: probe, registry: registry, cluster: cluster) },
            readingsPerSecond: { writer.readingsPerSecond },
            drain: { await writer.shutdown() },
            bound: bound)
        let clusterServices: [any Service] = [cluster as (any Service)?, claims, expiryLease].compactMap { $0 }
        let services: [any Service] = [partitions, rollups, listener, executor, probe, commandStore] + clusterServices
            + [writer, runner, commands, server]
        group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [], logger: logger))
    }

    /// Runs the service group in the hub's one task; when it ends (stopped, or a part
    /// failed) the embedded cluster stops and `finished` ends.
    private func launch(finished: AsyncStream<Int>.Continuation) {
        let (group, database, logger, box) = (self.group, self.database, self.logger, self.state)
        let run = Task {
            do {
                try await group.run()
            } catch {
                logger.critical("the hub stopped on a failure", metadata: ["error": "\(error)"])
                box.withLockedValue { $0.failure = error }
            }
            finished.finish()
            database.stop(force: true)
        }
        box.withLockedValue { $0.run = run }
    }

    /// What partition maintenance and retention did since start.
    public var storageReport: PartitionManager.Report { partitions.report }

    /// `/readyz`: the devices are loaded, the database answers within 2 s, writes succeed, and ingest is not stalled
    /// (readings waiting with no commit for 10 s).
    static func readiness(writer: IngestWriter, probe: DatabaseExecutor, registry: DeviceRegistry, cluster: ClusterNode?) async -> Readiness {
        if let known = knownUnready(writer: writer, registry: registry, cluster: cluster) { return known }
        let reachable = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                // A connection broken by a database restart fails once and is replaced: try
                // again at once, so the first probe after the database is back says so.
                for _ in 0..<2 {
                    if (try? await probe.run { _ = try $0.query("SELECT 1") }) != nil { return true }
                }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        return reachable ? Readiness(ready: true, detail: "ready") : Readiness(ready: false, detail: "database unreachable")
    }

    /// The checks of `/readyz` that need no query: the reason the hub is not ready, or nil.
    /// `/metrics` reports them as `hub_ready` at every scrape.
    static func knownUnready(writer: IngestWriter, registry: DeviceRegistry, cluster: ClusterNode?) -> Readiness? {
        guard registry.isLoaded else { return Readiness(ready: false, detail: "devices not loaded: the database has not answered since start") }
        if let cluster, !cluster.isConnected { return Readiness(ready: false, detail: "cluster: not connected to NATS") }
        if let failure = writer.failure { return Readiness(ready: false, detail: "database writes failing: \(failure)") }
        if writer.isStalled(limitNanos: 10_000_000_000) { return Readiness(ready: false, detail: "ingest stalled: no commit for 10 s") }
        return nil
    }

    /// Graceful stop: the service group shuts down in reverse start order (see the type's
    /// summary); returns once every part, and the embedded cluster, has stopped.
    public func stop() async {
        logger.info("stopping: finishing ingest")
        await group.triggerGracefulShutdown()
        await state.withLockedValue { $0.run }?.value
        logger.info("stopped")
    }
}
