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
/// All state is touched on the channel's event loop only.
final class DashboardHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let eventLoop: EventLoop
    let connectionID = ConnectionID.make()
    private let access: APITokens.Access
    let environment: LiveEnvironment
    var logger: Logger
    var context: ChannelHandlerContext?
    var subscriptions: [String: LiveSubscription] = [:]
    var outbox = Outbox()
    /// Whether the outbox conflates: written on this loop, read by the fan-out on any loop.
    let backlog = NIOLockedValueBox(false)
    /// This loop's copy of `backlog`, to touch the lock only on a change.
    var backlogNoted = false
    var rate = RateLimiter()
    var rateTimer: Scheduled<Void>?
    var replays: [String: ReplayBuffer] = [:]
    var closing = false

    /// Read by the fan-out: build no text for this dashboard while it conflates.
    var isBacklogged: Bool { backlog.withLockedValue { $0 } }

    init(access: APITokens.Access, environment: LiveEnvironment, eventLoop: EventLoop) {
        self.access = access
        self.environment = environment
        self.eventLoop = eventLoop
        logger = environment.logger
        logger[metadataKey: "connection"] = "\(connectionID)"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        environment.dashboards.insert(self)
        environment.metrics.connected.increment()
        send(LiveMessages.hello(connection: connectionID, serverTimeMicros: WallClock.nowMicros()), context: context)
        context.flush()
        logger.info("dashboard connected")
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        rateTimer?.cancel()
        for subscription in subscriptions.values { environment.fanout.index.remove(subscription, patterns: subscription.patterns) }
        subscriptions = [:]
        replays = [:]
        environment.dashboards.remove(self)
        environment.metrics.connected.decrement()
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
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            close(code: 1000, context: context)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    private func handle(_ text: String, context: ChannelHandlerContext) {
        guard let message = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            sendError("bad_json", "expected a JSON object", context: context)
            return
        }
        switch message["type"] as? String {
        case "ping":
            send(LiveMessages.pong, context: context)
        case "subscribe":
            subscribe(message, context: context)
        case "unsubscribe":
            guard let id = message["id"] as? String, let subscription = subscriptions.removeValue(forKey: id) else {
                sendError("unknown_subscription", "no subscription with that id", context: context)
                return
            }
            environment.fanout.index.remove(subscription, patterns: subscription.patterns)
            replays[id] = nil
            rate.remove(sub: id)
        case "command":
            guard access == .full else {
                sendError("forbidden", "a read-only token cannot send commands", context: context)
                return
            }
            command(message, context: context)
        case let type?:
            sendError("unknown_type", "unknown message type \(type)", context: context)
        case nil:
            sendError("bad_message", "a message needs a string \"type\"", context: context)
        }
    }

    /// `command`: stored and routed like a REST one; answered with `command_status` and `ref`.
    private func command(_ message: [String: Any], context: ChannelHandlerContext) {
        let ref = message["ref"] as? String
        guard let device = message["device"] as? String, DeviceID.isValid(device), environment.registry.record(id: device) != nil else {
            sendError("not_found", "\"device\" must name a registered device", context: context)
            return
        }
        let order: CommandOrder
        do {
            order = try CommandOrder(message, settings: environment.commands.settings)
        } catch {
            sendError("bad_command", error.message, context: context)
            return
        }
        let commands = environment.commands
        Task { [self] in
            do {
                // The answer (`queued`, with the ref) comes from the command center.
                _ = try await commands.create(
                    device: device, name: order.name, paramsJSON: order.paramsJSON, ttlSeconds: order.ttlSeconds, ref: ref, origin: self)
            } catch CommandStoreError.tooManyPending {
                eventLoop.execute { self.deliverError("too_many_pending", "device \(device) has too many pending commands") }
            } catch {
                eventLoop.execute { self.deliverError("unavailable", "the command could not be stored; try again") }
            }
        }
    }

    private func deliverError(_ code: String, _ message: String) {
        guard let context else { return }
        sendError(code, message, context: context)
        context.flush()
    }

    private func subscribe(_ message: [String: Any], context: ChannelHandlerContext) {
        guard let id = message["id"] as? String, !id.isEmpty, id.utf8.count <= 64 else {
            sendError("bad_subscription", "\"id\" must be a string of 1 to 64 bytes", context: context)
            return
        }
        guard let selectors = message["devices"] as? [String], !selectors.isEmpty else {
            sendError("bad_subscription", "\"devices\" must be a non-empty list of ids or globs", context: context)
            return
        }
        var patterns: [DevicePattern] = []
        for selector in selectors {
            guard let pattern = DevicePattern(selector) else {
                sendError("bad_glob", "\(JSON.quote(selector)) is not a device id or glob (A-Z a-z 0-9 . _ - and *)", context: context)
                return
            }
            patterns.append(pattern)
        }
        var metrics: Set<String>?
        if let list = message["metrics"] {
            guard let names = list as? [String] else {
                sendError("bad_subscription", "\"metrics\" must be a list of metric names", context: context)
                return
            }
            metrics = Set(names)
        }
        var maxRate: Double?
        if let raw = message["max_rate_hz"] {
            guard let rate = (raw as? NSNumber)?.doubleValue, rate > 0, rate <= 1_000 else {
                sendError("bad_subscription", "\"max_rate_hz\" must be a number above 0 and at most 1000", context: context)
                return
            }
            maxRate = rate
        }
        var since: Int64?
        if let raw = message["since_us"] {
            guard let value = raw as? NSNumber, value.int64Value >= 0 else {
                sendError("bad_subscription", "\"since_us\" must be a non-negative integer of microseconds", context: context)
                return
            }
            since = value.int64Value
        }
        var resume: [String: UInt64] = [:]
        if let raw = message["resume"] {
            guard let object = raw as? [String: Any] else {
                sendError("bad_subscription", "\"resume\" must map device ids to the last seq seen", context: context)
                return
            }
            for (device, seq) in object {
                guard DeviceID.isValid(device), let number = seq as? NSNumber, number.int64Value >= 0 else {
                    sendError("bad_subscription", "\"resume\" must map device ids to the last seq seen", context: context)
                    return
                }
                resume[device] = number.uint64Value
            }
        }
        if subscriptions[id] == nil && subscriptions.count >= environment.maxSubscriptions {
            sendError("too_many_subscriptions", "at most \(environment.maxSubscriptions) subscriptions per connection", context: context)
            return
        }
        if let previous = subscriptions[id] { environment.fanout.index.remove(previous, patterns: previous.patterns) }
        let subscription = LiveSubscription(id: id, patterns: patterns, metrics: metrics, maxRateHz: maxRate, dashboard: self)
        subscriptions[id] = subscription
        replays[id] = nil
        let replaying = since != nil || !resume.isEmpty
        // Buffer live events before registering, so none slips between replay and live.
        if replaying { replays[id] = ReplayBuffer(resume: resume) }
        environment.fanout.index.add(subscription, patterns: patterns)
        send(LiveMessages.subscribed(id: id), context: context)
        if replaying { startReplay(subscription, since: since, resume: resume) }
    }

    // MARK: - Writing

    /// Writes one text message (not flushed). - Returns: whether the socket is still writable.
    @discardableResult
    func send(_ text: String, context: ChannelHandlerContext) -> Bool {
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))), promise: nil)
        return context.channel.isWritable
    }

    /// Writes and flushes one message; the future completes once it is on the socket.
    func sendAndFlush(_ text: String, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))))
    }

    func sendError(_ code: String, _ message: String, context: ChannelHandlerContext) {
        send(LiveMessages.error(code: code, message: message), context: context)
    }

    /// Closes with a close code (shutdown uses 1001).
    func close(_ reason: CloseReason) {
        eventLoop.execute { [self] in
            if let context { close(code: reason.code, reason: reason.rawValue, context: context) }
        }
    }

    func close(code: UInt16, reason: String = "", context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        if !reason.isEmpty { logger.info("closing dashboard", metadata: ["reason": "\(reason)", "code": "\(code)"]) }
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.writeInteger(code)
        data.writeString(reason)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in context.close(promise: nil) }
    }
}

