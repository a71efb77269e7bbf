import Logging
import NATS
import NIOConcurrencyHelpers
import NIOCore

/// A NATS core client on SwiftNIO: one TCP connection to one server, kept up by reconnecting
/// with backoff until `shutdown()`.
///
/// Subscriptions are remembered and sent again on every reconnect; publishes made while
/// disconnected wait in a bounded buffer. Delivery is at most once, as NATS core's is:
/// bytes the socket had taken when a connection broke are lost.
///
/// Threads: the connection picks one event loop of the group and keeps its connection state
/// on it (`LoopState`, in a `NIOLoopBoundBox`). What the public API touches from any thread
/// is in `SharedState`, under one lock. Timers (backoff, pings, request timeouts) are NIO
/// tasks scheduled on that loop. Subscription handlers, reconnect and disconnect handlers run
/// on that loop too, so they must not block.
///
/// Call `shutdown()` (or run it as a `Service`) when done: its timers and channel keep it alive
/// until then.
public final class NATSConnection: Sendable {
    let configuration: Configuration
    let loop: any EventLoop
    let logger: Logger
    let backoff: ReconnectBackoff
    /// `_INBOX.<token>.`: each request's reply subject is this and its id.
    let inboxPrefix: String
    /// `SUB _INBOX.<token>.* 0`, sent by every handshake.
    let inboxSubscribeLine: [UInt8]
    /// The `CONNECT` line, the same for every connection.
    let connectLine: [UInt8]
    let shared: NIOLockedValueBox<SharedState>
    let loopState: NIOLoopBoundBox<LoopState>

    /// The sid of the inbox subscription; a caller's subscriptions count from 1.
    static let inboxSid = "0"

    public init(configuration: Configuration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        loop = eventLoopGroup.next()
        var logger = logger
        logger[metadataKey: "nats.server"] = "\(configuration.host):\(configuration.port)"
        self.logger = logger
        backoff = ReconnectBackoff(
            minNanos: configuration.minReconnectDelayNanos, maxNanos: configuration.maxReconnectDelayNanos)
        inboxPrefix = "_INBOX.\(InboxToken.make())."
        // Neither can fail: the token is base62, and JSON escapes CR and LF inside strings.
        inboxSubscribeLine = (try? NATSEncoder.subscribe(subject: inboxPrefix + "*", sid: Self.inboxSid)) ?? []
        connectLine = (try? NATSEncoder.connect(json: ConnectOptions(name: configuration.name).json)) ?? []
        shared = NIOLockedValueBox(SharedState(
            maxPendingBytes: configuration.maxPendingBytes, maxPendingRequests: configuration.maxPendingRequests))
        loopState = NIOLoopBoundBox.makeBoxSendingValue(
            LoopState(lifecycle: ConnectionLifecycle(maxPingsOutstanding: configuration.maxPingsOutstanding)),
            eventLoop: loop)
    }

    /// Begins connecting in the background; retries forever, with backoff, until `shutdown()`.
    /// Calling it again does nothing.
    public func start() {
        loop.execute { self.perform(self.loopState.value.lifecycle.start()) }
    }

    /// Closes the connection and stops reconnecting; fails every pending request and flush
    /// with `shutDown`. Returns when the channel is closed. Idempotent.
    ///
    /// What was queued is written before the close when the connection is up.
    public func shutdown() async {
        let closed = loop.flatSubmit { self.beginShutdown() }
        try? await closed.get()
    }

    /// Whether the connection is up: connected, `INFO` and `CONNECT` exchanged, and the
    /// server has answered the handshake's `PING`.
    public var isConnected: Bool { shared.withLockedValue { $0.isConnected } }

    /// Publishes dropped so far: an invalid subject, a payload over the server's
    /// `max_payload`, a full pending buffer, or after shutdown.
    public var droppedPublishes: Int { shared.withLockedValue { $0.droppedPublishes } }

    /// Runs `handler` on the event loop after each REconnect (not the first connect), once
    /// every `SUB` was sent again and the server had processed them, so callers can repair
    /// their streams.
    public func onReconnect(_ handler: @escaping @Sendable () -> Void) {
        shared.withLockedValue { $0.reconnectHandlers.append(handler) }
    }

    /// Runs `handler` on the event loop each time an established connection is lost.
    public func onDisconnect(_ handler: @escaping @Sendable () -> Void) {
        shared.withLockedValue { $0.disconnectHandlers.append(handler) }
    }
}
