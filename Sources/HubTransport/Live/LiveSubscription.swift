import HubIngest

/// One `subscribe` of one dashboard connection.
final class LiveSubscription: Sendable {
    let id: String
    let patterns: [DevicePattern]
    /// `nil` means every metric.
    let metrics: Set<String>?
    unowned let dashboard: DashboardHandler

    init(id: String, patterns: [DevicePattern], metrics: Set<String>?, dashboard: DashboardHandler) {
        self.id = id
        self.patterns = patterns
        self.metrics = metrics
        self.dashboard = dashboard
    }
}
