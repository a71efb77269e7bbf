import NIOCore

/// The part of a connection's state that only its event loop touches. It lives in a
/// `NIOLoopBoundBox`, which checks that every access is on the loop.
struct LoopState {
    var lifecycle: ConnectionLifecycle
    /// The current channel, from a successful TCP connect until it goes inactive.
    var channel: (any Channel)?
    /// The current channel's handler: its parser's payload limit follows `INFO`.
    var handler: NATSInboundHandler?
    /// Bounds `INFO` and the handshake's `PONG`.
    var handshakeTimer: Scheduled<Void>?
    var pingTimer: RepeatedTask?
    var reconnectTimer: Scheduled<Void>?
    /// Why the client closed the current channel, for the log line when it goes inactive.
    var closeReason: CloseReason?
    /// Made by the first `shutdown()`; succeeded once no channel is open or about to be.
    var shutdownPromise: EventLoopPromise<Void>?
    var random = SystemRandomNumberGenerator()

    init(lifecycle: ConnectionLifecycle) { self.lifecycle = lifecycle }
}
