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
    /// The same for all dashboards together: past it, each conflates at what it holds.
    public var maxDashboardQueueBytesTotal = 128 << 20
    /// Deliveries (frames × subscriptions) and bytes waiting for the dashboards of one event
    /// loop, from all loops' fan-out; past either, frames are conflated until that loop
    /// catches up (`LoopMailbox`).
    public var maxFanoutDeliveries = 100_000
    public var maxFanoutBytes = 8 << 20
    /// Commands per device that are not final; more get 429.
    public var maxPendingCommandsPerDevice = 1_000
    /// The largest REST request body; larger gets 413.
    public var maxRequestBodyBytes = 1 << 20
    /// The TCP listen backlog, raised above the usual 256 for reconnect storms.
    public var backlog: Int32 = 4096
    /// Device connections at once; an upgrade past it gets 503.
    public var maxDeviceConnections = 50_000
    /// Dashboard connections at once; an upgrade past it gets 503.
    public var maxDashboardConnections = 1_000
    /// WebSocket upgrades (devices and dashboards) accepted per second, as a token bucket
    /// holding one second's worth; past it 503 with `Retry-After: 1`.
    public var connectsPerSecond = 2_000
    /// Frames per second one device may send, as a token bucket holding one second's
    /// worth; past it the hub stops reading that socket until the bucket refills.
    public var maxFramesPerSecondPerDevice = 1_000
    /// The largest JSON text message a device or dashboard may send; larger gets an
    /// `error` (`too_large`) and the connection stays open.
    public var maxJSONBytes = 16_384
    /// HTTP request headers, all names and values together; larger gets 431.
    public var maxHeaderBytes = 16_384
    /// Entries in one subscription's `devices`, and in its `metrics`; more is
    /// `bad_subscription`.
    public var maxPatterns = 100
    /// A peer that takes no byte of what the hub has for it for this long is closed (4008
    /// for dashboards, 1008 for devices, a plain close for HTTP).
    public var writeTimeoutSeconds = 30
    /// Bytes waiting in one connection's socket buffer; past it the connection is closed
    /// the same way. Larger than any single answer (a replay page, a REST answer).
    public var maxOutboundBytes = 8 << 20
    /// At shutdown, how long close frames may take to go out before the sockets are
    /// closed without them.
    public var closeGrace: Duration = .seconds(2)
    /// A request's headers must arrive within this of its first byte.
    public var headerTimeoutSeconds = 10
    /// An HTTP connection with no request under way is closed after this.
    public var idleTimeoutSeconds = 60
    /// Failed authentications (401, 403) per second per source address; past it 429.
    public var authFailuresPerSecond = 20
    /// A TLS handshake that has not finished within this is closed.
    public var tlsHandshakeTimeoutSeconds = 10
    /// Command replies (`command_ack`, `command_result`) of one device, and commands of one
    /// dashboard, being applied at once; past it the hub stops reading that socket.
    public var maxRequestsInFlight = 16
    /// Browser origins allowed on `/live`, the REST API and the page, as
    /// `scheme://host[:port]`; empty means the hub's own (the request's `Host`).
    public var allowedOrigins: [String] = []
    /// Serve https and wss with this certificate and key (PEM files).
    public var tls: TLS?

    public struct TLS: Sendable {
        public var certificatePath: String
        public var keyPath: String

        public init(certificatePath: String, keyPath: String) {
            self.certificatePath = certificatePath
            self.keyPath = keyPath
        }
    }

    public init() {}
}
