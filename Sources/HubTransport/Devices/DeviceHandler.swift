import Foundation
import HubIngest
import HubProtocol
import Logging
import NIOCore
import NIOWebSocket

/// One device's WebSocket after the upgrade: the shell around its `DeviceSession`. It
/// tells the session what the socket and the hub do and performs what the session
/// decides: writes the welcome, acks and refusals, hands each read cycle's burst to the
/// ingest queue, publishes to dashboards, posts command replies, reads or holds reads.
///
/// All state is touched on the channel's event loop only; the `DeviceConnection` methods,
/// called from other threads, hop there first.
final class DeviceHandler: ChannelDuplexHandler, DeviceConnection, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// The connection's id as a number: its 16-digit text is made when a log line, the
    /// welcome or presence needs it, so an idle connection holds no string for it.
    private let connectionNumber = ConnectionID.random()
    private let remote: String
    let environment: DeviceEnvironment
    let eventLoop: EventLoop
    private let fanout: FanoutBatch
    var context: ChannelHandlerContext?
    private let heartbeat: LoopHeartbeat
    var session: DeviceSession

    init(device: DeviceRecordRef, remote: String, environment: DeviceEnvironment, eventLoop: EventLoop) {
        self.remote = remote
        self.environment = environment
        self.eventLoop = eventLoop
        fanout = environment.fanout.batch(for: eventLoop)
        heartbeat = environment.heartbeats.on(eventLoop)
        session = DeviceSession(
            device: device, framesPerSecond: environment.configuration.maxFramesPerSecondPerDevice, nowNanos: environment.clock.uptimeNanos())
    }

    var deviceID: String { session.device.id }
    var connectionID: String { ConnectionID.text(connectionNumber) }

    /// The hub's logger with this connection's device and id: made for each (rare) line,
    /// so an idle connection holds no metadata of its own.
    var logger: Logger {
        var logger = environment.logger
        logger[metadataKey: "device"] = "\(deviceID)"
        logger[metadataKey: "connection"] = "\(connectionID)"
        return logger
    }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        environment.connections.insert(self)
        environment.metrics.devicesConnected.increment()
        guard let (number, previous) = environment.registry.attach(self, deviceID: deviceID) else {
            closeSocket(.revoked)
            return
        }
        let loop = eventLoop
        if let claims = environment.claims {
            // A cluster: the session and mark come from PostgreSQL, once a connection of
            // this node taken over is drained.
            let (device, remote) = (session.device, remote)
            let claim: @Sendable () -> Void = {
                claims.claim(device, remote: remote) { result in loop.execute { self.claimed(result) } }
            }
            if let previous { previous.replace(whenDrained: claim) } else { claim() }
            return
        }
        logger.info("device connected", metadata: ["session": "\(number)", "remote": "\(remote)"])
        session.attached(session: number, remote: remote, nowMicros: environment.clock.wallMicros())
        pushBurst()
        if let previous {
            previous.replace(whenDrained: { loop.execute { self.sendWelcome() } })
        } else {
            sendWelcome()
        }
    }

    /// The claim (cluster mode) answered: welcome with what it read back, or close.
    private func claimed(_ result: Result<DeviceClaim, ClaimFailure>) {
        guard context != nil else { return }
        switch result {
        case .success(let claim):
            logger.info("device connected", metadata: ["session": "\(claim.session)", "remote": "\(remote)"])
            environment.registry.claimed(id: deviceID, session: claim.session, mark: claim.mark)
            session.attached(session: claim.session, remote: remote, nowMicros: environment.clock.wallMicros(), persist: false)
            sendWelcome(mark: claim.mark)
        case .failure(let failure):
            logger.warning("device claim failed", metadata: ["error": "\(failure)"])
            closeSocket(failure == .superseded ? .replaced : .unavailable)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pushBurst()
        session.inactive()
        announceOffline()
        heartbeat.remove(self)
        logger.info("device disconnected")
        checkDrained()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        environment.connections.remove(self)
        environment.metrics.devicesConnected.decrement()
        self.context = nil
    }

    /// - Parameter claimed: the mark a claim read back (cluster mode); otherwise the registry's.
    private func sendWelcome(mark claimed: UInt64? = nil) {
        guard let context else { return }
        let configuration = environment.configuration
        let mark = claimed ?? environment.registry.record(id: deviceID)?.mark ?? 0
        let stream = DeviceStream(
            mark: mark, limits: configuration.streamLimits, metrics: DeviceMetrics(device: session.device.key, catalog: environment.metricCatalog))
        guard let held = session.welcome(stream: stream) else { return }
        let welcome = Welcome(
            device: deviceID, connection: connectionID, session: session.session, lastSeq: mark,
            serverTimeMicros: environment.clock.wallMicros(), maxFrameBytes: configuration.maxFrameBytes,
            heartbeatSeconds: configuration.heartbeatSeconds)
        writeText(welcome.json, context: context)
        context.flush()
        environment.fanout.publishPresence(
            device: session.device, online: true, session: session.session, connection: connectionID, remote: remote,
            atMicros: environment.clock.wallMicros(), on: fanout)
        environment.commands.post(.ready(device: deviceID, session: session.session, connection: self))
        heartbeat.add(self)
        for incoming in held { take(incoming, context: context) }
        if !held.isEmpty { channelReadComplete(context: context) }
        readIfPending()
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let nanos = environment.clock.uptimeNanos()
        session.heard(nowNanos: nanos)
        switch frame.opcode {
        case .binary, .text:
            let isText = frame.opcode == .text
            let copy = { Array(frame.unmaskedData.readableBytesView) }
            guard session.gate(isText ? .text(copy()) : .binary(copy())) == .take else { return }
            session.charge(nowNanos: nanos)
            if isText {
                receiveText(Data(frame.unmaskedData.readableBytesView), context: context)
            } else {
                frame.unmaskedData.withUnsafeReadableBytes { receiveBinary($0, context: context) }
            }
        case .ping:
            var pong = frame.unmaskedData
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: pong.readSlice(length: pong.readableBytes)!)), promise: nil)
            context.flush()
        case .connectionClose:
            guard session.peerClosed() else { return }
            var data = frame.unmaskedData
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.writeInteger(data.readInteger(as: UInt16.self) ?? 1000)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                .whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    /// A frame that waited (before the welcome, or past the rate), taken now.
    private func take(_ incoming: DeviceSession.Incoming, context: ChannelHandlerContext) {
        session.charge(nowNanos: environment.clock.uptimeNanos())
        switch incoming {
        case .binary(let bytes): bytes.withUnsafeBytes { receiveBinary($0, context: context) }
        case .text(let bytes): receiveText(Data(bytes), context: context)
        }
    }

    private func receiveBinary(_ bytes: UnsafeRawBufferPointer, context: ChannelHandlerContext) {
        if case .rejected(let rejected) = session.receive(bytes, nowMicros: environment.clock.wallMicros()) {
            writeText(Rejected(seq: rejected.seq, reason: rejected.reason).json, context: context)
            environment.logRejection(device: deviceID, connection: connectionID, reason: rejected.reason)
        }
    }

    private func receiveText(_ bytes: Data, context: ChannelHandlerContext) {
        switch DeviceReply.parse(bytes, maxBytes: environment.configuration.maxJSONBytes) {
        case .failure(let refusal):
            writeText(ErrorMessage(code: refusal.code, message: refusal.message).json, context: context)
        case .success(let reply):
            // The command center applies replies in the order posted: an ack never overtakes its result.
            session.replyPosted()
            switch reply {
            case .acknowledged(let id):
                environment.commands.post(.acknowledged(id: id, device: deviceID, applied: replyApplied()))
            case .finished(let id, let ok, let result, let error):
                environment.commands.post(.finished(
                    id: id, device: deviceID, ok: ok, resultJSON: result, error: error, applied: replyApplied()))
            }
        }
    }

    /// What the command center calls once it has applied a reply: reading may go on.
    private func replyApplied() -> @Sendable () -> Void {
        let loop = eventLoop
        return {
            loop.execute {
                self.session.replyApplied()
                self.readIfPending()
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        pushBurst()
        report(session.takeCounts())
        let end = session.endCycle(writable: context.channel.isWritable)
        if let ack = end.ack { writeAck(ack, context: context) }
        context.flush()
        if let reason = end.close { closeSocket(reason) }
        if let pause = end.pauseNanos {
            // Over its frame rate: frames already read wait in the session, and the socket
            // is not read until the bucket is out of debt; the rest waits in TCP.
            environment.ratePauses.increment()
            context.eventLoop.scheduleTask(in: .nanoseconds(Int64(pause))) { [self] in rateRecovered() }
        }
    }

    private func rateRecovered() {
        guard session.rateRecovered(), let context else { return }
        while let incoming = session.nextDeferred() { take(incoming, context: context) }
        channelReadComplete(context: context)
        readIfPending()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if let ack = session.writableAgain() {
                writeAck(ack, context: context)
                context.flush()
            }
            readIfPending()
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

    // MARK: - Outbound: reads are held while the session says so

    func read(context: ChannelHandlerContext) {
        if session.mayRead(writable: context.channel.isWritable, maxRepliesInFlight: environment.configuration.maxRequestsInFlight) {
            context.read()
        }
    }

    private func readIfPending() {
        if session.readPending, let context { read(context: context) }
    }

    // MARK: - Ingest hand-over

    func pushBurst() {
        guard let burst = session.takeBurst(for: self) else { return }
        let hasRoom = environment.queue.push(burst, nowNanos: environment.clock.uptimeNanos())
        // Dashboards see accepted frames at once, before the commit. Publishing after the
        // push is what makes replay gap-free (see DashboardHandler's replay).
        if !burst.frames.isEmpty { environment.fanout.publish(device: session.device, frames: burst.frames, on: fanout) }
        if session.pushed(queueHasRoom: hasRoom) {
            environment.metrics.backpressurePauses.increment()
            let loop = eventLoop
            environment.queue.whenSpaceAvailable {
                loop.execute {
                    self.session.queueHasRoom()
                    self.readIfPending()
                }
            }
        }
    }

    /// Tells dashboards this connection is gone: before the takeover's welcome, so the old
    /// session's offline event comes before the new session's online event.
    private func announceOffline() {
        guard session.goOffline() else { return }
        environment.commands.post(.gone(device: deviceID, session: session.session))
        environment.fanout.publishPresence(
            device: session.device, online: false, session: session.session, connection: connectionID, remote: remote,
            atMicros: environment.clock.wallMicros(), on: fanout)
    }

    private func report(_ counts: DeviceSession.CycleCounts) {
        let metrics = environment.metrics
        if counts.frames > 0 {
            metrics.framesAccepted.increment(by: Int64(counts.frames))
            metrics.readingsAccepted.increment(by: Int64(counts.readings))
        }
        if counts.duplicates > 0 { metrics.framesDuplicate.increment(by: Int64(counts.duplicates)) }
        if counts.gaps > 0 { metrics.seqGaps.increment(by: Int64(counts.gaps)) }
    }

    func checkDrained() {
        guard let drained = session.drained() else { return }
        if drained.closeReplaced {
            closeSocket(.replaced)
            announceOffline()
        }
        if drained.detach { environment.registry.detach(self, deviceID: deviceID) }
        drained.waiters.forEach { $0() }
    }
}
