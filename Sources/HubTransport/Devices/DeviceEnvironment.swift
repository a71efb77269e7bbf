import HubIngest
import Logging
import Metrics
import NIOConcurrencyHelpers

/// What every device connection shares: the registry, the ingest queue, settings, metrics.
final class DeviceEnvironment: Sendable {
    let registry: DeviceRegistry
    let metricCatalog: MetricCatalog
    let queue: IngestQueue
    let configuration: ServerConfiguration
    let logger: Logger
    let metrics: IngestMetrics
    let connections = ConnectionSet<DeviceHandler>()
    /// One heartbeat task per event loop for all of its device connections.
    let heartbeats: Heartbeats
    let fanout: LiveFanout
    let commands: CommandCenter
    let clock: any HubClock
    /// In a cluster, where connections claim their device before the welcome; `nil` on a single node.
    let claims: (any DeviceClaims)?
    /// Times a device's socket stopped being read for exceeding its frame rate.
    let ratePauses = Counter(label: "hub_device_rate_pauses_total")
    private let rejectionLog = NIOLockedValueBox<(count: Int, since: Int64)>((0, 0))

    init(registry: DeviceRegistry, metricCatalog: MetricCatalog, queue: IngestQueue, configuration: ServerConfiguration, logger: Logger, metrics: IngestMetrics, fanout: LiveFanout, commands: CommandCenter, clock: any HubClock, claims: (any DeviceClaims)?) {
        self.claims = claims
        self.fanout = fanout
        self.clock = clock
        self.commands = commands
        self.registry = registry
        self.metricCatalog = metricCatalog
        self.queue = queue
        self.configuration = configuration
        heartbeats = Heartbeats(intervalSeconds: configuration.heartbeatSeconds)
        self.logger = logger
        self.metrics = metrics
    }

    /// Logs rejected frames at most once per 10 s, with the count since the last line.
    func logRejection(device: String, connection: String, reason: String) {
        metrics.framesRejected.increment()
        let now = clock.wallMicros()
        let report: Int? = rejectionLog.withLockedValue { state in
            state.count += 1
            guard now - state.since >= 10_000_000 else { return nil }
            defer { state = (0, now) }
            return state.count
        }
        if let report {
            logger.warning("rejected frames", metadata: ["device": "\(device)", "connection": "\(connection)", "count": "\(report)", "last_reason": "\(reason)"])
        }
    }
}
