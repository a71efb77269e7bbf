import NATS

/// What the channel handler hands over, on `loop`. Events from a handler that is no longer
/// the current channel's are ignored.
extension NATSConnection {
    func received(_ op: ServerOp, from handler: NATSInboundHandler) {
        guard loopState.value.handler === handler else { return }
        switch op {
        case .msg(let message):
            deliver(message)
        case .ping:
            if let channel = loopState.value.channel {
                channel.writeAndFlush(channel.allocator.buffer(bytes: NATSEncoder.pong), promise: nil)
            }
        case .pong:
            receivedPong()
        case .info(let json):
            receivedInfo(json, handler: handler)
        case .ok:
            break
        case .err(let text):
            // Fatal errors are followed by the server closing the connection; we reconnect.
            logger.warning("NATS server error", metadata: ["error": "\(text)"])
        }
    }

    func protocolFailed(_ error: NATSProtocolError, from handler: NATSInboundHandler) {
        guard loopState.value.handler === handler else { return }
        logger.warning("NATS protocol error", metadata: ["error": "\(error)"])
        perform(.close(.protocolError))
    }

    func becameWritable(from handler: NATSInboundHandler) {
        guard loopState.value.handler === handler else { return }
        writeQueued()
    }

    private func deliver(_ message: Message) {
        if message.sid == Self.inboxSid {
            receivedReply(message)
            return
        }
        // Unknown sid: unsubscribed while the message was on its way.
        guard let handler = shared.withLockedValue({ $0.subscriptions[message.sid]?.handler }) else { return }
        handler(message)
    }

    private func receivedPong() {
        loopState.value.lifecycle.receivedPong()
        switch shared.withLockedValue({ $0.outbound.pong() }) {
        case .handshake:
            perform(loopState.value.lifecycle.handshakeAnswered())
        case .flush(let id):
            completeFlush(id, .success(()))
        case .keepalive, .orphaned, nil:
            break
        }
    }

    private func receivedInfo(_ json: String, handler: NATSInboundHandler) {
        guard let info = ServerInfo(json: json) else {
            logger.warning("NATS server sent a bad INFO")
            perform(.close(.badInfo))
            return
        }
        handler.maxPayloadLength = info.maxPayload
        shared.withLockedValue { $0.maxPayload = info.maxPayload }
        perform(loopState.value.lifecycle.receivedInfo())
    }
}
