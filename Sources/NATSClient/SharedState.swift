import NATS

/// The part of a connection's state that any thread touches. It lives in one
/// `NIOLockedValueBox`.
///
/// Lock rule: the lock is held only to read or change this value, never while calling out
/// (subscription handlers, completions, channel writes, scheduling tasks). It is the only
/// lock in the module, so there is no lock order to keep.
struct SharedState: Sendable {
    struct Subscription: Sendable {
        var subject: String
        /// The `SUB` line, sent again by every handshake.
        var line: [UInt8]
        var handler: @Sendable (Message) -> Void
    }

    /// Bytes for the socket; its bound is `Configuration.maxPendingBytes`.
    var outbound: OutboundQueue
    /// By sid. Memory bound: one entry per subscription not yet unsubscribed; the caller
    /// bounds how many it makes.
    var subscriptions: [String: Subscription] = [:]
    var nextSid = 1
    /// Whether the current connection's handshake has taken its `SUB`s from
    /// `subscriptions`: from then on a new subscription queues its own `SUB`.
    var subscriptionsSent = false
    /// Requests waiting for replies; bound `Configuration.maxPendingRequests`.
    var requests: PendingCompletions<Message>
    /// Flushes waiting for their `PONG`; same bound as requests.
    var flushes: PendingCompletions<Void>
    /// The handshake's `PONG` came and the connection has not been lost since.
    var isConnected = false
    var isShutDown = false
    /// The current server's `max_payload`; until the first `INFO`, the NATS default.
    var maxPayload = NATSParser.defaultMaxPayloadLength
    var droppedPublishes = 0
    /// Memory bound: one closure per `onReconnect` / `onDisconnect` call.
    var reconnectHandlers: [@Sendable () -> Void] = []
    var disconnectHandlers: [@Sendable () -> Void] = []

    init(maxPendingBytes: Int, maxPendingRequests: Int) {
        outbound = OutboundQueue(maxBytes: maxPendingBytes)
        requests = PendingCompletions(capacity: maxPendingRequests)
        flushes = PendingCompletions(capacity: maxPendingRequests)
    }
}
