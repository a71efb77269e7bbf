import HubIngest

/// Listener and socket settings.
public struct ServerConfiguration: Sendable {
    public var host = "0.0.0.0"
    /// `0` picks a free port; the bound one is reported by `HubServer.start()`.
    public var port = 8080
    /// The largest binary or text message a device may send (contract default 64 KiB).
    public var maxFrameBytes = 65_536
    /// Ping interval; a peer silent for twice this long is closed with 4002.
    public var heartbeatSeconds = 30
    /// The bad-frame limit (default more than 100 within 60 s closes with 1008).
    public var streamLimits = DeviceStream.Limits()
    /// Register unknown devices on first connect, without a token (development only).
    public var autoProvision = false
    /// Subscriptions one dashboard connection may hold.
    public var maxSubscriptionsPerDashboard = 100
    /// Events waiting for one slow dashboard, in bytes; past it events are dropped and
    /// counted, and the dashboard gets `lagged`.
    public var maxDashboardQueueBytes = 4 << 20
    /// A dashboard that cannot take events for this long is closed with 4008 (slow_consumer).
    public var dashboardStallSeconds = 60
    /// Commands per device that are not final; more get 429.
    public var maxPendingCommandsPerDevice = 1_000
    /// The largest REST request body; larger gets 413.
    public var maxRequestBodyBytes = 1 << 20
    /// The TCP listen backlog, raised above the usual 256 for reconnect storms.
    public var backlog: Int32 = 4096

    public init() {}
}
