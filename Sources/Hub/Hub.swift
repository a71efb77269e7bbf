import Foundation
import HubIngest
import HubStorage
import HubTransport
import Logging
import Postgres

/// The composition root: builds and runs a whole hub from a `HubConfiguration`.
///
/// Start order is dependency order (database, registry, writer, server); `stop()` runs in
/// reverse and loses no accepted frame: the server stops reading, the writer commits and
/// acks what was read, then sockets close with 1001 and the embedded cluster stops.
public final class Hub: Sendable {
    public let configuration: HubConfiguration
    /// The bound port (useful with port 0).
    public let port: Int
    public let database: DatabaseTarget
    public let registry: DeviceRegistry
    public let apiToken: String
    private let queue: IngestQueue
    private let writer: IngestWriter
    private let listener: DeviceChangeListener
    private let executor: DatabaseExecutor
    private let probe: DatabaseExecutor
    private let commandStore: PostgresCommandStore
    private let partitions: PartitionManager
    private let rollups: RollupFolder
    private let server: HubServer
    private let logger: Logger

    /// Starts a hub; returns once it accepts connections.
    public static func start(_ configuration: HubConfiguration, logger: Logger) async throws -> Hub {
        try APIToken.check(configuration.apiToken, flag: "--api-token")
        try APIToken.check(configuration.readToken, flag: "--read-token")
        try DataFolder.prepare(
            configuration.dataDirectory, owner: configuration.databaseURL == nil ? EmbeddedPostgres.serviceUserIfRoot() : nil)
        let database = try await Task.detached {
            try DatabaseTarget(
                databaseURL: configuration.databaseURL, clusterDirectory: configuration.clusterDirectory,
                logger: logger, timeout: configuration.databaseStartupTimeout)
        }.value
        do {
            return try await Hub(configuration: configuration, database: database, logger: logger)
        } catch {
            database.stop()
            throw error
        }
    }

    private init(configuration: HubConfiguration, database: DatabaseTarget, logger: Logger) async throws {
        self.configuration = configuration
        self.database = database
        self.logger = logger
        apiToken = try configuration.apiToken ?? APIToken.loadOrCreate(in: configuration.dataDirectory)

        HubMetrics.bootstrap()
        let registry = DeviceRegistry(autoProvision: configuration.server.autoProvision)
        let metricCatalog = MetricCatalog(limits: configuration.metricLimits)
        if database.reachableAtStart {
            let store = DeviceStore(connection: try PostgresConnection(url: database.url))
            try store.loadMetrics(into: metricCatalog)
            registry.load(try store.loadAll())
        }
        self.registry = registry

        partitions = PartitionManager(url: database.url, settings: configuration.storage, logger: logger)
        if database.reachableAtStart {
            // Partitions for now and ahead exist before the first frame arrives.
            try partitions.runOnce(on: PostgresConnection(url: database.url), logger: logger)
        }
        partitions.start()
        rollups = RollupFolder(url: database.url, logger: logger)
        rollups.start()

        queue = IngestQueue(capacityRows: configuration.queueCapacityRows)
        let metrics = IngestMetrics()
        writer = IngestWriter(
            queue: queue, sink: PostgresIngestSink(url: database.url), registry: registry,
            configuration: .init(policy: FlushPolicy(
                maxRows: configuration.batchRows,
                maxDelayNanos: UInt64(configuration.flushInterval.components.attoseconds / 1_000_000_000)
                    + UInt64(configuration.flushInterval.components.seconds) * 1_000_000_000)),
            logger: logger, metrics: metrics)
        writer.start()

        listener = DeviceChangeListener(
            url: database.url, registry: registry, metrics: metricCatalog, schemaApplied: database.reachableAtStart, logger: logger
        ) { connection in
            connection.close(.revoked)
        }
        listener.start()

        let executor = DatabaseExecutor(url: database.url, name: "hub-database", statementTimeout: configuration.statementTimeout)
        self.executor = executor
        // Readiness has a connection of its own: it never waits behind REST or replays.
        let probe = DatabaseExecutor(url: database.url, name: "hub-readiness", threads: 1, statementTimeout: .seconds(2))
        self.probe = probe
        let commandStore = PostgresCommandStore(url: database.url, executor: executor, logger: logger)
        self.commandStore = commandStore
        let writer = self.writer
        server = HubServer(
            configuration: configuration.server, registry: registry, metricCatalog: metricCatalog, queue: queue, metrics: metrics,
            tokens: APITokens(full: apiToken, readOnly: configuration.readToken),
            history: PostgresTelemetryHistory(
                executor: executor, rollupRetentionDays: configuration.storage.rollupRetentionDays,
                pageRows: PostgresTelemetryHistory.pageRows(maxFrameBytes: configuration.server.maxFrameBytes)), admin: PostgresDeviceAdmin(executor: executor),
            queries: PostgresTelemetryQueries(executor: executor), commandStore: commandStore,
            logger: logger,
            provision: { id in try await executor.run { try DeviceStore(connection: $0).provision(id: id) } },
            metricsText: { [queue] in
                HubMetrics.queueDepth.record(queue.depth)
                return HubMetrics.text()
            },
            readiness: { [registry] in await Hub.readiness(writer: writer, probe: probe, registry: registry) })
        port = try await server.start()
        if configuration.server.autoProvision {
            logger.warning("auto-provisioning is on: any well-formed device id may connect without a token")
        }
    }

    /// What partition maintenance and retention did since start.
    public var storageReport: PartitionManager.Report { partitions.report }

    /// `/readyz`: the devices are loaded, the database answers within 2 s, writes succeed, and ingest is not stalled
    /// (readings waiting with no commit for 10 s).
    static func readiness(writer: IngestWriter, probe: DatabaseExecutor, registry: DeviceRegistry) async -> Readiness {
        guard registry.isLoaded else { return Readiness(ready: false, detail: "devices not loaded: the database has not answered since start") }
        if let failure = writer.failure { return Readiness(ready: false, detail: "database writes failing: \(failure)") }
        if writer.isStalled(limitNanos: 10_000_000_000) { return Readiness(ready: false, detail: "ingest stalled: no commit for 10 s") }
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

    /// Graceful stop: stop reading, commit and ack, close sockets with 1001, stop the cluster.
    public func stop() async {
        logger.info("stopping: finishing ingest")
        await server.quiesce()
        await writer.shutdown()
        await server.closeAll(.shuttingDown)
        listener.stop()
        partitions.stop()
        rollups.stop()
        commandStore.shutdown()
        executor.shutdown()
        probe.shutdown()
        database.stop(force: true)
        logger.info("stopped")
    }
}
