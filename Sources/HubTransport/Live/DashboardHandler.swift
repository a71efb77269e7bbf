import Foundation
import HubIngest
import HubProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// One dashboard's `/live` WebSocket: subscriptions in, pushed events out.
///
/// Fan-out never waits for a dashboard: while the socket is not writable, events wait in a
/// queue bounded by `maxQueuedBytes`; past it they are dropped and counted, and the
/// dashboard gets `lagged` with the count once it catches up.
/// Every reply (pong, errors, `subscribed`, replay pages) goes through the same outbox, and
/// the socket is not read while it cannot be written or while `maxRequestsInFlight`
/// commands of this dashboard are being stored: a peer that does not read cannot make the
/// hub hold more than the outbox's bound.
/// All state is touched on the channel's event loop only.
final class DashboardHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let eventLoop: EventLoop
    let connectionID = ConnectionID.make()
    private let access: APITokens.Access
    let environment: LiveEnvironment
    var logger: Logger
    var context: ChannelHandlerContext?
    var subscriptions: [String: LiveSubscription] = [:]
    var outbox = Outbox()
    /// The WebSocket frame encoder's context: a write from it goes below the encoder, so
    /// messages framed here (`TextFrame`) go out as they are. `nil` without an encoder.
    private var rawContext: ChannelHandlerContext?
    /// Messages framed and not yet handed to the socket (at most `spillBytes`).
    private var framed: ByteBuffer?
    static let spillBytes = 16 << 10
    var rate = RateLimiter()
    var rateTimer: Scheduled<Void>?
    var replays: [String: ReplayBuffer] = [:]
    /// Per subscription, per device: the last seq its replay read from history, kept after
    /// the handover only where this node's fan-out had not yet reached it (in a cluster, a
    /// takeover's stream repair may still bring those frames live). A live frame at or below
    /// it is a repeat; the first one above it drops the entry. Empty on a single node.
    var replayFloors: [String: [String: UInt64]] = [:]
    /// Replay chunks waiting for the outbox to empty: a chunk goes out only behind
    /// everything queued before it (`subscribed` first of all).
    var idleWaiters: [EventLoopPromise<Void>] = []
    var closing = false
    /// Commands sent from this connection and not yet stored, and replays under way.
    var requestsInFlight = 0
    /// Replays under way (each holds a page and a buffer of live events).
    var replaysInFlight = 0
    /// Replays one connection runs at once; a subscribe with replay past it waits (the
    /// socket is not read until one ends).
    static let maxReplaysInFlight = 2
    private var readPending = false

    /// Read by this loop's fan-out mailbox: it makes no text for this dashboard while it conflates.
    var isBacklogged: Bool { outbox.isConflating }

    init(access: APITokens.Access, environment: LiveEnvironment, eventLoop: EventLoop) {
        self.access = access
        self.environment = environment
        self.eventLoop = eventLoop
        logger = environment.logger
        logger[metadataKey: "connection"] = "\(connectionID)"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        rawContext = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        environment.dashboards.insert(self)
        environment.metrics.connected.increment()
        emit(control: Hello(connection: connectionID, serverTimeMicros: environment.clock.wallMicros()).json, context: context)
        flushOut(context)
        logger.info("dashboard connected")
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        rateTimer?.cancel()
        releaseIdleWaiters()
        for subscription in subscriptions.values { environment.fanout.remove(subscription, patterns: subscription.patterns) }
        subscriptions = [:]
        replays = [:]
        replayFloors = [:]
        let held = outbox.queuedBytes
        outbox = Outbox()
        account(since: held)
        environment.dashboards.remove(self)
        environment.metrics.connected.decrement()
        framed = nil
        rawContext = nil
        self.context = nil
        logger.info("dashboard disconnected")
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            var payload = frame.unmaskedData
            handle(payload.readString(length: payload.readableBytes) ?? "", context: context)
        case .binary:
            sendError("bad_message", "binary messages are not part of /live", context: context)
        case .ping:
            // Bounded like every reply: the socket is not read while it is not writable.
            spill()
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            close(code: 1000, context: context)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOut(context)
    }

    private func handle(_ text: String, context: ChannelHandlerContext) {
        let message: LiveClientMessage
        do {
            message = try LiveClientMessage(text: text, limits: environment.limits)
        } catch {
            sendError(error.code, error.message, context: context)
            return
        }
        switch message {
        case .ping:
            emit(control: Pong().json, context: context)
        case .subscribe(let request):
            subscribe(request, context: context)
        case .unsubscribe(let id):
            guard let subscription = subscriptions.removeValue(forKey: id) else {
                sendError("unknown_subscription", "no subscription with that id", context: context)
                return
            }
            environment.fanout.remove(subscription, patterns: subscription.patterns)
            replays[id] = nil
            replayFloors[id] = nil
            rate.remove(sub: id)
            outbox.forget(sub: id)
        case .command(let fields):
            guard access == .full else {
                sendError("forbidden", "a read-only token cannot send commands", context: context)
                return
            }
            command(fields, context: context)
        }
    }

    /// `command`: stored and routed like a REST one; answered with `command_status` and `ref`.
    private func command(_ message: LiveCommand?, context: ChannelHandlerContext) {
        let ref = message?.ref
        guard let message, DeviceID.isValid(message.device), environment.registry.record(id: message.device) != nil else {
            sendError("not_found", "\"device\" must name a registered device", context: context)
            return
        }
        let device = message.device
        let order: CommandOrder
        do {
            order = try CommandOrder(
                name: message.name, params: message.params, ttl: message.ttlSeconds, settings: environment.commands.settings)
        } catch {
            sendError("bad_command", error.message, context: context)
            return
        }
        requestsInFlight += 1
        let loop = eventLoop
        environment.commands.post(.order(.init(
            device: device, name: order.name, paramsJSON: order.paramsJSON, ttlSeconds: order.ttlSeconds, ref: ref, origin: self,
            done: { error in
                // The answer (`queued`, with the ref) comes from the command center; a failure from here.
                let failure: (code: String, message: String)? = switch error {
                case nil: nil
                case CommandStoreError.tooManyPending?: ("too_many_pending", "device \(device) has too many pending commands")
                case StorageFailure.refused(let why)?: ("bad_command", "the database cannot store this command: \(why)")
                default: ("unavailable", "the command could not be stored; try again")
                }
                loop.execute { self.commandDone(failure) }
            })))
    }

    /// A command of this connection was stored (or refused): reading may go on.
    private func commandDone(_ failure: (code: String, message: String)?) {
        requestDone()
        guard let context, let failure else { return }
        sendError(failure.code, failure.message, context: context)
        flushOut(context)
    }

    /// A command or a replay of this connection ended: reading may go on.
    func requestDone() {
        requestsInFlight -= 1
        if let context { resumeReadingIfAllowed(context: context) }
    }

    private func subscribe(_ request: SubscribeRequest, context: ChannelHandlerContext) {
        let (id, patterns, metrics, maxRate, since, resume) = (
            request.id, request.patterns, request.metrics, request.maxRateHz, request.sinceMicros, request.resume
        )
        if subscriptions[id] == nil && subscriptions.count >= environment.maxSubscriptions {
            sendError("too_many_subscriptions", "at most \(environment.maxSubscriptions) subscriptions per connection", context: context)
            return
        }
        if let previous = subscriptions[id] {
            // Replaced: nothing the old one held back goes out under the new one.
            environment.fanout.remove(previous, patterns: previous.patterns)
            rate.remove(sub: id)
            outbox.forget(sub: id)
        }
        let subscription = LiveSubscription(id: id, patterns: patterns, metrics: metrics, maxRateHz: maxRate, dashboard: self)
        subscriptions[id] = subscription
        replays[id] = nil
        replayFloors[id] = nil
        let replaying = since != nil || !resume.isEmpty
        // Buffer live events before registering, so none slips between replay and live.
        if replaying { replays[id] = ReplayBuffer(resume: resume) }
        environment.fanout.add(subscription, patterns: patterns)
        emit(control: Subscribed(id: id).json, context: context)
        if replaying { startReplay(subscription, since: since, resume: resume) }
    }

    // MARK: - Writing

    /// Writes one text message (not flushed). - Returns: whether the socket is still writable.
    @discardableResult
    func send(_ text: String, context: ChannelHandlerContext) -> Bool {
        guard let raw = rawContext else {
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))), promise: nil)
            return context.channel.isWritable
        }
        // Framed here, many messages to one buffer and one write: the pipeline's per-write
        // work (the frame encoder, the pending-writes queue) is then paid per flush, not per message.
        var buffer = framed ?? context.channel.allocator.buffer(capacity: max(Self.spillBytes, text.utf8.count + 10))
        framed = nil
        TextFrame.write(text, to: &buffer)
        if buffer.readableBytes >= Self.spillBytes {
            raw.write(NIOAny(buffer), promise: nil)
        } else {
            framed = buffer
        }
        return context.channel.isWritable
    }

    /// Hands the messages framed so far to the socket (unflushed), ahead of anything written after.
    func spill() {
        guard let buffer = framed, let rawContext else { return }
        framed = nil
        rawContext.write(NIOAny(buffer), promise: nil)
    }

    /// Flushes, the messages framed so far first.
    func flushOut(_ context: ChannelHandlerContext) {
        spill()
        context.flush()
    }

    /// Writes and flushes one message; the future completes once it is on the socket.
    func sendAndFlush(_ text: String, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        spill()
        return context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))))
    }

    func sendError(_ code: String, _ message: String, context: ChannelHandlerContext) {
        emit(control: ErrorMessage(code: code, message: message).json, context: context)
    }

    // MARK: - Reading only while replies can be written

    func read(context: ChannelHandlerContext) {
        guard mayRead(context) else {
            readPending = true
            return
        }
        readPending = false
        context.read()
    }

    private func mayRead(_ context: ChannelHandlerContext) -> Bool {
        context.channel.isWritable && requestsInFlight < environment.maxRequestsInFlight
            && replaysInFlight < Self.maxReplaysInFlight
    }

    func resumeReadingIfAllowed(context: ChannelHandlerContext) {
        if readPending, mayRead(context) {
            readPending = false
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is WriteWatchdog.Expired {
            environment.metrics.slowClosed.increment()
            close(code: CloseReason.slowConsumer.code, reason: CloseReason.slowConsumer.rawValue, context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Closes with a close code (shutdown uses 1001).
    func close(_ reason: CloseReason) {
        eventLoop.execute { [self] in
            if let context { close(code: reason.code, reason: reason.rawValue, context: context) }
        }
    }

    /// Closes with a close code. - Returns: the channel's close, once the close frame is out.
    func closed(_ reason: CloseReason) -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            guard let context else { return eventLoop.makeSucceededVoidFuture() }
            close(code: reason.code, reason: reason.rawValue, context: context)
            return context.channel.closeFuture
        }
    }

    func close(code: UInt16, reason: String = "", context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        releaseIdleWaiters()
        if !reason.isEmpty { logger.info("closing dashboard", metadata: ["reason": "\(reason)", "code": "\(code)"]) }
        spill()
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.writeInteger(code)
        data.writeString(reason)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in context.close(promise: nil) }
    }
}


/// A server's WebSocket text message, framed (RFC 6455 §5.2: FIN, opcode 1, unmasked).
enum TextFrame {
    static func write(_ text: String, to buffer: inout ByteBuffer) {
        let count = text.utf8.count
        buffer.writeInteger(UInt8(0x81))
        if count < 126 {
            buffer.writeInteger(UInt8(count))
        } else if count <= Int(UInt16.max) {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(count))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(count))
        }
        buffer.writeString(text)
    }
}
