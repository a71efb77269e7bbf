import Foundation
import HubIngest
import HubProtocol
import Logging
import NIOCore
import NIOWebSocket

/// One device's WebSocket after the upgrade: sends the welcome, runs frames through the
/// ingest state machine, hands them to the queue once per read cycle, and sends acks when
/// the writer reports a commit.
///
/// All state is touched on the channel's event loop only; the `DeviceConnection` methods,
/// called from other threads, hop there first.
final class DeviceHandler: ChannelDuplexHandler, DeviceConnection, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private enum State {
        /// Waiting for an earlier connection's frames to commit; incoming frames are held.
        case awaitingWelcome
        case streaming
        /// A newer connection took over, or the hub is stopping: frames are no longer taken.
        case stopped
        case inactive
    }

    let connectionID: String
    private let device: DeviceRecordRef
    private let remote: String
    private let environment: DeviceEnvironment
    private let eventLoop: EventLoop
    private var logger: Logger
    private var context: ChannelHandlerContext?
    private var state = State.awaitingWelcome
    private var stream: DeviceStream?
    private var burst: IngestBurst?
    private var held: [WebSocketFrame] = []
    private var inFlight = 0
    private var drainWaiters: [@Sendable () -> Void] = []
    private var replaced = false
    private var paused = false
    /// Frames per second this device may send; reading waits while the bucket is in debt.
    private lazy var frameBudget = TokenBucket(perSecond: Double(environment.configuration.maxFramesPerSecondPerDevice))
    private var rateDebtNanos: UInt64?
    private var pausedForRate = false
    /// Frames already read while over the rate; taken in order once the bucket allows.
    private var deferred: [WebSocketFrame] = []
    private var readPending = false
    private var pendingAck: UInt64?
    /// Counted per read cycle, reported to metrics once per cycle.
    private var cycleCounts = (frames: 0, readings: 0, duplicates: 0)
    private var reportedGaps = 0
    private var closeAfterReadCycle: CloseReason?
    private var closing = false
    /// When the device last sent anything (monotonic nanoseconds), for the heartbeat.
    private var lastActivityNanos: UInt64
    private var heartbeat: RepeatedTask?
    private var session: Int64 = 0
    /// Command replies handed to the command center and not applied yet; at
    /// `maxRequestsInFlight` the socket is not read.
    private var repliesInFlight = 0
    private let fanout: FanoutBatch
    private var announcedOnline = false

    init(device: DeviceRecordRef, remote: String, environment: DeviceEnvironment, eventLoop: EventLoop) {
        self.device = device
        self.remote = remote
        self.environment = environment
        self.eventLoop = eventLoop
        connectionID = ConnectionID.make()
        fanout = environment.fanout.batch(for: eventLoop)
        logger = environment.logger
        lastActivityNanos = environment.clock.uptimeNanos()
        logger[metadataKey: "device"] = "\(device.id)"
        logger[metadataKey: "connection"] = "\(connectionID)"
    }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        environment.connections.insert(self)
        environment.metrics.devicesConnected.increment()
        guard let (session, previous) = environment.registry.attach(self, deviceID: device.id) else {
            closeSocket(.revoked)
            return
        }
        self.session = session
        logger.info("device connected", metadata: ["session": "\(session)", "remote": "\(remote)"])
        var start = IngestBurst(device: device, connection: self)
        start.session = SessionStart(session: session, remote: remote, atMicros: environment.clock.wallMicros())
        burst = start
        pushBurst()
        let loop = eventLoop
        if let previous {
            previous.replace(whenDrained: { loop.execute { self.sendWelcome(session: session) } })
        } else {
            sendWelcome(session: session)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pushBurst()
        state = .inactive
        announceOffline()
        heartbeat?.cancel()
        heartbeat = nil
        logger.info("device disconnected")
        checkDrained()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        environment.connections.remove(self)
        environment.metrics.devicesConnected.decrement()
        self.context = nil
    }

    private func sendWelcome(session: Int64) {
        guard case .awaitingWelcome = state, let context else { return }
        let mark = environment.registry.record(id: device.id)?.mark ?? 0
        stream = DeviceStream(
            mark: mark, limits: environment.configuration.streamLimits,
            metrics: DeviceMetrics(device: device.key, catalog: environment.metricCatalog))
        state = .streaming
        let welcome = DeviceMessages.welcome(
            device: device.id, connection: connectionID, session: session, lastSeq: mark,
            serverTimeMicros: environment.clock.wallMicros(), maxFrameBytes: environment.configuration.maxFrameBytes,
            heartbeatSeconds: environment.configuration.heartbeatSeconds)
        writeText(welcome, context: context)
        context.flush()
        announcedOnline = true
        environment.fanout.publishPresence(
            device: device.id, online: true, session: session, connection: connectionID, remote: remote,
            atMicros: environment.clock.wallMicros(), on: fanout)
        environment.commands.post(.ready(device: device.id, session: session, connection: self))
        startHeartbeat(context: context)
        let early = held
        held = []
        for frame in early { receive(frame, context: context) }
        if !early.isEmpty { channelReadComplete(context: context) }
        if readPending { read(context: context) }
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastActivityNanos = environment.clock.uptimeNanos()
        switch frame.opcode {
        case .binary, .text:
            switch state {
            case .awaitingWelcome: held.append(frame)
            case .streaming:
                if pausedForRate { deferred.append(frame) } else { receive(frame, context: context) }
            case .stopped, .inactive: break  // not taken: never acked, so the device resends it
            }
        case .ping:
            var pong = frame.unmaskedData
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: pong.readSlice(length: pong.readableBytes)!)), promise: nil)
            context.flush()
        case .connectionClose:
            if !closing {
                closing = true
                var data = frame.unmaskedData
                let code = data.readInteger(as: UInt16.self) ?? 1000
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.writeInteger(code)
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                    .whenComplete { _ in context.close(promise: nil) }
            }
        default:
            break
        }
    }

    private func receive(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        // Text messages (command replies) count against the frame rate like frames.
        if let debt = frameBudget.take(nowNanos: environment.clock.uptimeNanos()) {
            rateDebtNanos = debt
            pausedForRate = true
        }
        if frame.opcode == .text {
            receiveText(frame.unmaskedData, context: context)
            return
        }
        let data = frame.unmaskedData
        let now = environment.clock.wallMicros()
        let action = data.withUnsafeReadableBytes { stream!.receive($0, nowMicros: now) }
        switch action {
        case .accept(let accepted):
            cycleCounts.frames += 1
            cycleCounts.readings += accepted.frame.readings.count
            addToBurst { $0.frames.append(accepted) }
        case .duplicate(let ackNow):
            cycleCounts.duplicates += 1
            if let ackNow { pendingAck = max(pendingAck ?? 0, ackNow) }
        case .reject(let rejected, let closeConnection):
            addToBurst { $0.rejections.append(rejected) }
            writeText(DeviceMessages.rejected(seq: rejected.seq, reason: rejected.reason), context: context)
            environment.logRejection(device: device.id, connection: "\(connectionID)", reason: rejected.reason)
            if closeConnection { closeAfterReadCycle = .tooManyBadFrames }
        }
    }

    private func receiveText(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        guard buffer.readableBytes <= environment.configuration.maxJSONBytes else {
            writeText(DeviceMessages.error(code: "too_large", message: "text messages may have at most \(environment.configuration.maxJSONBytes) bytes"), context: context)
            return
        }
        let bytes = buffer.readableBytesView
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let type = object["type"] as? String
        else {
            writeText(DeviceMessages.error(code: "bad_message", message: "expected a JSON object with a \"type\""), context: context)
            return
        }
        let device = self.device.id
        switch type {
        case "command_ack":
            guard let id = object["id"] as? String else {
                writeText(DeviceMessages.error(code: "bad_message", message: "command_ack needs a string \"id\""), context: context)
                return
            }
            postReply(.acknowledged(id: id, device: device, applied: replyApplied()))
        case "command_result":
            guard let id = object["id"] as? String, let ok = JSONNumber.boolean(object["ok"]) else {
                writeText(DeviceMessages.error(code: "bad_message", message: "command_result needs a string \"id\" and a boolean \"ok\""), context: context)
                return
            }
            // What the database cannot store is refused here, before it reaches the shared
            // command writer; the command stays as it was.
            if let why = object["result"].flatMap(StorableJSON.refusal) ?? object["error"].flatMap(StorableJSON.refusal) {
                writeText(DeviceMessages.error(code: "bad_message", message: "command_result cannot be stored: \(why)"), context: context)
                return
            }
            let result = object["result"].flatMap(CommandJSON.text)
            let error = object["error"].map { ($0 as? String) ?? CommandJSON.text($0) ?? "failed" }
            postReply(.finished(id: id, device: device, ok: ok, resultJSON: result, error: error, applied: replyApplied()))
        default:
            writeText(DeviceMessages.error(code: "bad_message", message: "unknown message type \(type)"), context: context)
        }
    }

    /// Hands a command reply to the command center, which applies replies in the order
    /// they are posted (an ack never overtakes its result).
    private func postReply(_ event: CommandCenter.Event) {
        repliesInFlight += 1
        environment.commands.post(event)
    }

    /// What the command center calls once it has applied a reply: reading may go on.
    private func replyApplied() -> @Sendable () -> Void {
        let loop = eventLoop
        return {
            loop.execute {
                self.repliesInFlight -= 1
                if self.readPending, let context = self.context { self.read(context: context) }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        pushBurst()
        reportCycle()
        if let ack = pendingAck, context.channel.isWritable {
            pendingAck = nil
            writeAck(ack, context: context)
        }
        context.flush()
        if let reason = closeAfterReadCycle {
            closeAfterReadCycle = nil
            closeSocket(reason)
        }
        if let debt = rateDebtNanos {
            // Over its frame rate: frames already read wait in `deferred`, and the socket
            // is not read until the bucket is out of debt; the rest waits in TCP.
            rateDebtNanos = nil
            environment.ratePauses.increment()
            context.eventLoop.scheduleTask(in: .nanoseconds(Int64(debt))) { [self] in
                pausedForRate = false
                guard let context = self.context, case .streaming = state else { return }
                while !pausedForRate, !deferred.isEmpty { receive(deferred.removeFirst(), context: context) }
                channelReadComplete(context: context)
                if !pausedForRate, readPending { read(context: context) }
            }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if let ack = pendingAck {
                pendingAck = nil
                writeAck(ack, context: context)
                context.flush()
            }
            if readPending { read(context: context) }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is WriteWatchdog.Expired { closeSocket(.notReading) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if case NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge = error {
            closeSocket(.frameTooLarge)
        } else if error is NIOWebSocketError {
            // The protocol error handler already sent the matching close code (1009 for size).
            logger.info("websocket protocol error", metadata: ["error": "\(error)"])
        } else {
            logger.info("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    // MARK: - Outbound: reads are held while paused

    func read(context: ChannelHandlerContext) {
        // Not read while the device does not take what the hub writes (its replies would
        // only pile up), nor past the rate, the ingest queue, or the replies in flight.
        guard case .streaming = state, !paused, !pausedForRate, context.channel.isWritable,
            repliesInFlight < environment.configuration.maxRequestsInFlight
        else {
            readPending = true
            return
        }
        readPending = false
        context.read()
    }

    // MARK: - Ingest hand-over

    private func addToBurst(_ body: (inout IngestBurst) -> Void) {
        if burst == nil { burst = IngestBurst(device: device, connection: self) }
        body(&burst!)
    }

    /// Tells dashboards this connection is gone: before the takeover's welcome, so the old
    /// session's offline event comes before the new session's online event.
    private func announceOffline() {
        guard announcedOnline else { return }
        announcedOnline = false
        environment.commands.post(.gone(device: device.id, session: session))
        environment.fanout.publishPresence(
            device: device.id, online: false, session: session, connection: connectionID, remote: remote,
            atMicros: environment.clock.wallMicros(), on: fanout)
    }

    private func pushBurst() {
        guard let pending = burst else { return }
        burst = nil
        guard !pending.isEmpty else { return }
        inFlight += 1
        let hasRoom = environment.queue.push(pending, nowNanos: environment.clock.uptimeNanos())
        // Dashboards see accepted frames at once, before the commit. Publishing after the
        // push is what makes replay gap-free (see DashboardHandler's replay).
        if !pending.frames.isEmpty { environment.fanout.publish(device: device.id, frames: pending.frames, on: fanout) }
        if !hasRoom && !paused {
            paused = true
            environment.metrics.backpressurePauses.increment()
            let loop = eventLoop
            environment.queue.whenSpaceAvailable { loop.execute { self.resumeReading() } }
        }
    }

    private func reportCycle() {
        let metrics = environment.metrics
        if cycleCounts.frames > 0 {
            metrics.framesAccepted.increment(by: Int64(cycleCounts.frames))
            metrics.readingsAccepted.increment(by: Int64(cycleCounts.readings))
        }
        if cycleCounts.duplicates > 0 { metrics.framesDuplicate.increment(by: Int64(cycleCounts.duplicates)) }
        cycleCounts = (0, 0, 0)
        if let gaps = stream?.gaps, gaps > reportedGaps {
            metrics.seqGaps.increment(by: Int64(gaps - reportedGaps))
            reportedGaps = gaps
        }
    }

    private func resumeReading() {
        paused = false
        if readPending, let context { read(context: context) }
    }

    // MARK: - DeviceConnection

    func committed(upTo seq: UInt64?, items: Int) {
        eventLoop.execute { [self] in
            inFlight -= items
            if let seq {
                stream?.committed(upTo: seq)
                if let context, !closing, state != .inactive {
                    if context.channel.isWritable {
                        writeAck(seq, context: context)
                        context.flush()
                    } else {
                        // One ack covers all before it: hold only the newest until it can go.
                        pendingAck = max(pendingAck ?? 0, seq)
                    }
                }
            }
            checkDrained()
        }
    }

    func replace(whenDrained drained: @escaping @Sendable () -> Void) {
        eventLoop.execute { [self] in
            pushBurst()
            replaced = true
            if state != .inactive { state = .stopped }
            drainWaiters.append(drained)
            checkDrained()
        }
    }

    func close(_ reason: CloseReason) {
        eventLoop.execute { self.closeSocket(reason) }
    }

    /// Closes with `reason`. - Returns: the channel's close, once the close frame is out.
    func closed(_ reason: CloseReason) -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            guard let context else { return eventLoop.makeSucceededVoidFuture() }
            closeSocket(reason)
            return context.channel.closeFuture
        }
    }

    func send(text: String) {
        eventLoop.execute { [self] in
            guard state == .streaming, !closing, let context else { return }
            writeText(text, context: context)
            context.flush()
        }
    }

    /// Stops taking frames and hands over what was read (used on shutdown).
    func quiesce() -> EventLoopFuture<Void> {
        eventLoop.submit { [self] in
            pushBurst()
            if state != .inactive { state = .stopped }
        }
    }

    private func checkDrained() {
        guard inFlight == 0, burst == nil else { return }
        let waiters = drainWaiters
        drainWaiters = []
        if replaced {
            closeSocket(.replaced)
            announceOffline()
        }
        if state == .inactive { environment.registry.detach(self, deviceID: device.id) }
        waiters.forEach { $0() }
    }

    // MARK: - Writing

    private func writeAck(_ seq: UInt64, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: Ack.size)
        buffer.writeBytes(Ack(seq: seq).encoded())
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: buffer)), promise: nil)
    }

    private func writeText(_ text: String, context: ChannelHandlerContext) {
        let buffer = context.channel.allocator.buffer(string: text)
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
    }

    private func closeSocket(_ reason: CloseReason) {
        guard !closing, let context else { return }
        closing = true
        if state != .inactive { state = .stopped }
        logger.info("closing device connection", metadata: ["reason": "\(reason.rawValue)", "code": "\(reason.code)"])
        var data = context.channel.allocator.buffer(capacity: 2 + reason.rawValue.utf8.count)
        data.writeInteger(reason.code)
        data.writeString(reason.rawValue)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in context.close(promise: nil) }
    }

    private func startHeartbeat(context: ChannelHandlerContext) {
        let interval = TimeAmount.seconds(Int64(environment.configuration.heartbeatSeconds))
        heartbeat = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            guard let context = self.context, !closing else { return }
            if environment.clock.uptimeNanos() &- lastActivityNanos > UInt64(interval.nanoseconds) * 2 {
                closeSocket(.heartbeatTimeout)
            } else {
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0))), promise: nil)
            }
        }
    }
}
