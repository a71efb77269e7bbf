import Logging
import Metrics

/// What every dashboard connection shares.
final class LiveEnvironment: Sendable {
    struct Counters: Sendable {
        let deliveries = Counter(label: "hub_live_deliveries_total")
        let dropped = Counter(label: "hub_live_dropped_total")
        let lagged = Counter(label: "hub_live_lagged_total")
    }

    let fanout = LiveFanout()
    let dashboards = ConnectionSet<DashboardHandler>()
    let tokens: APITokens
    let maxSubscriptions: Int
    let maxQueuedBytes: Int
    let logger: Logger
    let metrics = Counters()

    init(tokens: APITokens, configuration: ServerConfiguration, logger: Logger) {
        self.tokens = tokens
        maxSubscriptions = configuration.maxSubscriptionsPerDashboard
        maxQueuedBytes = configuration.maxDashboardQueueBytes
        self.logger = logger
    }
}
