import HubIngest
import Logging
import Metrics
import Synchronization

/// What every dashboard connection shares.
final class LiveEnvironment: Sendable {
    struct Counters: Sendable {
        let deliveries = Counter(label: "hub_live_deliveries_total")
        let dropped = Counter(label: "hub_live_dropped_total")
        let lagged = Counter(label: "hub_live_lagged_total")
        let conflated = Counter(label: "hub_live_conflated_total")
        let slowClosed = Counter(label: "hub_live_slow_consumers_closed_total")
        let connected = Meter(label: "hub_dashboards_connected")
    }

    let fanout: LiveFanout
    let commands: CommandCenter
    let runner: RequestRunner
    let clock: any HubClock
    let dashboards = ConnectionSet<DashboardHandler>()
    let tokens: APITokens
    let registry: DeviceRegistry
    let queue: IngestQueue
    let history: TelemetryHistory
    let maxSubscriptions: Int
    let limits: LiveClientMessage.Limits
    let maxRequestsInFlight: Int
    let maxQueuedBytes: Int
    /// What all dashboards' outboxes may hold together; past it each conflates at what it holds.
    let maxTotalQueuedBytes: Int
    /// What they hold now (changed by each dashboard on its own loop).
    let totalQueuedBytes = Atomic<Int>(0)
    let stallLimitNanos: UInt64
    let logger: Logger
    let metrics = Counters()

    init(
        tokens: APITokens, registry: DeviceRegistry, queue: IngestQueue, history: TelemetryHistory, fanout: LiveFanout,
        commands: CommandCenter, runner: RequestRunner, clock: any HubClock, configuration: ServerConfiguration, logger: Logger
    ) {
        self.clock = clock
        self.fanout = fanout
        self.commands = commands
        self.runner = runner
        self.tokens = tokens
        self.registry = registry
        self.queue = queue
        self.history = history
        maxSubscriptions = configuration.maxSubscriptionsPerDashboard
        limits = .init(maxBytes: configuration.maxJSONBytes, maxPatterns: configuration.maxPatterns)
        maxRequestsInFlight = configuration.maxRequestsInFlight
        maxQueuedBytes = configuration.maxDashboardQueueBytes
        maxTotalQueuedBytes = configuration.maxDashboardQueueBytesTotal
        stallLimitNanos = UInt64(configuration.writeTimeoutSeconds) * 1_000_000_000
        self.logger = logger
    }
}
