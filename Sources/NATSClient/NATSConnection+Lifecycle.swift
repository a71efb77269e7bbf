import NATS
import NIOCore
import NIOPosix

/// The loop side of the connection: performs `ConnectionLifecycle`'s actions. Everything
/// here runs on `loop`.
extension NATSConnection {
    func perform(_ action: ConnectionLifecycle.Action) {
        switch action {
        case .none:
            break
        case .connect:
            connect()
        case .sendHandshake:
            sendHandshake()
        case .becameConnected(let isReconnect):
            becameConnected(isReconnect: isReconnect)
        case .sendPing:
            let appended = shared.withLockedValue { $0.outbound.appendPing(.keepalive, line: NATSEncoder.ping) }
            if appended == .first { scheduleWrite() }
        case .close(let reason):
            close(reason)
        case .reconnectLater(let attempt, let wasConnected):
            reconnectLater(attempt: attempt, wasConnected: wasConnected)
        case .closeForShutdown:
            writeQueued()
            close(.shutdown)
        case .shutDownNow:
            loopState.value.reconnectTimer?.cancel()
            loopState.value.reconnectTimer = nil
            logger.debug("NATS connection shut down")
            loopState.value.shutdownPromise?.succeed()
        }
    }

    private func connect() {
        logger.debug("NATS connecting")
        ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(Int64(clamping: configuration.connectTimeoutNanos)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NATSInboundHandler(connection: self))
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.channelConnected(channel)
                case .failure(let error):
                    self.logger.debug("NATS connect failed", metadata: ["error": "\(error)"])
                    self.perform(self.loopState.value.lifecycle.connectFailed())
                }
            }
    }

    private func channelConnected(_ channel: any Channel) {
        loopState.value.channel = channel
        loopState.value.handler = try? channel.pipeline.syncOperations.handler(type: NATSInboundHandler.self)
        loopState.value.closeReason = nil
        loopState.value.handshakeTimer = loop.scheduleTask(
            in: .nanoseconds(Int64(clamping: configuration.connectTimeoutNanos))
        ) {
            self.perform(self.loopState.value.lifecycle.handshakeTimedOut())
        }
        perform(loopState.value.lifecycle.connectSucceeded())
    }

    /// `CONNECT`, the inbox `SUB`, every subscription's `SUB`, then `PING`, in one write.
    private func sendHandshake() {
        guard let channel = loopState.value.channel else { return }
        var bytes = connectLine
        bytes += inboxSubscribeLine
        let lines = shared.withLockedValue { state in
            state.subscriptionsSent = true
            state.outbound.handshakeSent()
            return state.subscriptions.values.map(\.line)
        }
        for line in lines { bytes += line }
        bytes += NATSEncoder.ping
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
    }

    private func becameConnected(isReconnect: Bool) {
        loopState.value.handshakeTimer?.cancel()
        loopState.value.handshakeTimer = nil
        let handlers = shared.withLockedValue { state in
            state.isConnected = true
            return isReconnect ? state.reconnectHandlers : []
        }
        let interval = TimeAmount.nanoseconds(Int64(clamping: configuration.pingIntervalNanos))
        loopState.value.pingTimer = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            self.perform(self.loopState.value.lifecycle.pingTimerFired())
        }
        logger.info(isReconnect ? "NATS reconnected" : "NATS connected")
        writeQueued()
        for handler in handlers { handler() }
    }

    private func close(_ reason: CloseReason) {
        guard let channel = loopState.value.channel else { return }
        loopState.value.closeReason = loopState.value.closeReason ?? reason
        channel.close(promise: nil)
    }

    /// The current channel went inactive: forget it, fail the flushes it owed, and let the
    /// lifecycle decide what comes next.
    func channelInactive(from handler: NATSInboundHandler) {
        guard loopState.value.handler === handler else { return }
        let reason = loopState.value.closeReason ?? .connectionLost
        loopState.value.channel = nil
        loopState.value.handler = nil
        loopState.value.closeReason = nil
        loopState.value.handshakeTimer?.cancel()
        loopState.value.handshakeTimer = nil
        loopState.value.pingTimer?.cancel()
        loopState.value.pingTimer = nil
        let (wasConnected, lostFlushes) = shared.withLockedValue { state in
            let wasConnected = state.isConnected
            state.isConnected = false
            state.subscriptionsSent = false
            return (wasConnected, state.outbound.connectionLost().compactMap { state.flushes.remove($0) })
        }
        if wasConnected, reason != .shutdown {
            logger.warning("NATS connection lost", metadata: ["reason": "\(reason.rawValue)"])
        } else {
            logger.debug("NATS connection closed", metadata: ["reason": "\(reason.rawValue)"])
        }
        for flush in lostFlushes { flush.complete(.failure(NATSRequestError.notConnected)) }
        perform(loopState.value.lifecycle.channelInactive())
    }

    private func reconnectLater(attempt: Int, wasConnected: Bool) {
        if wasConnected {
            for handler in shared.withLockedValue({ $0.disconnectHandlers }) { handler() }
        }
        let delay = backoff.delay(attempt: attempt, using: &loopState.value.random)
        logger.debug("NATS reconnecting", metadata: ["attempt": "\(attempt)", "delay_ms": "\(delay / 1_000_000)"])
        loopState.value.reconnectTimer = loop.scheduleTask(in: .nanoseconds(Int64(clamping: delay))) {
            self.loopState.value.reconnectTimer = nil
            self.perform(self.loopState.value.lifecycle.backoffFired())
        }
    }

    /// The first `shutdown()` fails what waits, stops the timers and closes; every call
    /// gets the same future, succeeded once no channel is open or about to be.
    func beginShutdown() -> EventLoopFuture<Void> {
        if let promise = loopState.value.shutdownPromise { return promise.futureResult }
        let promise = loop.makePromise(of: Void.self)
        loopState.value.shutdownPromise = promise
        let (requests, flushes) = shared.withLockedValue { state in
            state.isShutDown = true
            return (state.requests.removeAll(), state.flushes.removeAll())
        }
        for request in requests { request.complete(.failure(NATSRequestError.shutDown)) }
        for flush in flushes { flush.complete(.failure(NATSRequestError.shutDown)) }
        perform(loopState.value.lifecycle.shutdown())
        return promise.futureResult
    }
}
