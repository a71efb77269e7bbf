import NIOCore

/// The clocks of one HTTP connection, before any WebSocket upgrade: a request's headers
/// must arrive within `headerTimeout` of its first byte, and a connection with no request
/// under way closes after `idleTimeout`. It sits in front of the HTTP decoder and sees
/// raw bytes; the HTTP handler tells it when a head is complete and when an answer has
/// been written. Removed once the connection is a WebSocket (heartbeats take over).
final class HTTPTimeouts: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State {
        /// Between requests: the idle clock runs.
        case idle
        /// A request's first bytes came: the header clock runs.
        case readingHead
        /// The head is in; the request is being read or answered.
        case busy
    }

    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var state = State.idle
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(headerTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(idleTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(idleTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = state, unwrapInboundIn(data).readableBytes > 0 {
            state = .readingHead
            arm(headerTimeout)
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    /// The HTTP handler has a request's head.
    func headReceived() {
        state = .busy
        timer?.cancel()
        timer = nil
    }

    /// The answer to the last request has been written; the next request may come.
    func answered() {
        state = .idle
        arm(idleTimeout)
    }

    private func arm(_ delay: TimeAmount) {
        timer?.cancel()
        guard let context else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) { [self] in
            timer = nil
            if case .busy = state { return }
            bound.value.close(promise: nil)
        }
    }
}
