import Foundation
import HubIngest
import HubProtocol
import Logging
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
    private let environment: LiveEnvironment
    private var logger: Logger
    private var context: ChannelHandlerContext?
    private var subscriptions: [String: LiveSubscription] = [:]
    private var queued: [(event: LiveEvent, bytes: Int)] = []
    private var queuedBytes = 0
    private var dropped: [String: Int] = [:]
    private var closing = false

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
        send(LiveMessages.hello(connection: connectionID, serverTimeMicros: WallClock.nowMicros()), context: context)
        context.flush()
        logger.info("dashboard connected")
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        for subscription in subscriptions.values { environment.fanout.index.remove(subscription, patterns: subscription.patterns) }
        subscriptions = [:]
        environment.dashboards.remove(self)
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
        case "command":
            if access == .readOnly {
                sendError("forbidden", "a read-only token cannot send commands", context: context)
            } else {
                sendError("unavailable", "commands are not available in this version of the hub", context: context)
            }
        case let type?:
            sendError("unknown_type", "unknown message type \(type)", context: context)
        case nil:
            sendError("bad_message", "a message needs a string \"type\"", context: context)
        }
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
        if message["since_us"] != nil || message["resume"] != nil || message["max_rate_hz"] != nil {
            sendError("unsupported", "since_us, resume and max_rate_hz are not available in this version of the hub", context: context)
            return
        }
        if subscriptions[id] == nil && subscriptions.count >= environment.maxSubscriptions {
            sendError("too_many_subscriptions", "at most \(environment.maxSubscriptions) subscriptions per connection", context: context)
            return
        }
        if let previous = subscriptions[id] { environment.fanout.index.remove(previous, patterns: previous.patterns) }
        let subscription = LiveSubscription(id: id, patterns: patterns, metrics: metrics, dashboard: self)
        subscriptions[id] = subscription
        environment.fanout.index.add(subscription, patterns: patterns)
        send(LiveMessages.subscribed(id: id), context: context)
    }

    // MARK: - Outbound

    /// Events from the fan-out, on this loop.
    func deliver(_ events: [LiveEvent]) {
        guard let context, !closing else { return }
        for event in events {
            if case .telemetry(let subscription, _, _, _) = event, subscriptions[subscription.id] !== subscription { continue }
            if queued.isEmpty && context.channel.isWritable {
                write(event, context: context)
            } else {
                enqueue(event)
            }
        }
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func enqueue(_ event: LiveEvent) {
        let bytes = event.text.utf8.count
        if queuedBytes + bytes > environment.maxQueuedBytes, case .telemetry(let subscription, _, _, _) = event {
            dropped[subscription.id, default: 0] += 1
            environment.metrics.dropped.increment()
            return
        }
        queued.append((event, bytes))
        queuedBytes += bytes
    }

    private func drain(context: ChannelHandlerContext) {
        var index = 0
        while index < queued.count && context.channel.isWritable {
            write(queued[index].event, context: context)
            queuedBytes -= queued[index].bytes
            index += 1
        }
        queued.removeFirst(index)
        if queued.isEmpty && !dropped.isEmpty {
            for (sub, count) in dropped where subscriptions[sub] != nil {
                send(LiveMessages.lagged(sub: sub, dropped: count), context: context)
                environment.metrics.lagged.increment()
            }
            dropped = [:]
        }
        context.flush()
    }

    private func write(_ event: LiveEvent, context: ChannelHandlerContext) {
        send(event.text, context: context)
        environment.metrics.deliveries.increment()
    }

    private func send(_ text: String, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text))), promise: nil)
    }

    private func sendError(_ code: String, _ message: String, context: ChannelHandlerContext) {
        send(LiveMessages.error(code: code, message: message), context: context)
    }

    /// Closes with a close code (shutdown uses 1001).
    func close(_ reason: CloseReason) {
        eventLoop.execute { [self] in
            if let context { close(code: reason.code, context: context) }
        }
    }

    private func close(code: UInt16, context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.writeInteger(code)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in context.close(promise: nil) }
    }
}

extension LiveEvent {
    var text: String {
        switch self {
        case .telemetry(_, _, _, let text): text
        case .control(let text): text
        }
    }
}
