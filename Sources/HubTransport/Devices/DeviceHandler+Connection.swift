import HubIngest
import HubProtocol
import NIOCore
import NIOWebSocket

/// What the hub asks of a device connection (`DeviceConnection`, from any thread: each
/// hops to the loop), and the writes the shell performs for its session.
extension DeviceHandler {
    // MARK: - DeviceConnection

    func committed(upTo seq: UInt64?, items: Int) {
        eventLoop.execute { [self] in
            if let ack = session.committed(upTo: seq, items: items, writable: context?.channel.isWritable ?? false), let context {
                writeAck(ack, context: context)
                context.flush()
            }
            checkDrained()
        }
    }

    func replace(whenDrained drained: @escaping @Sendable () -> Void) {
        eventLoop.execute { [self] in
            pushBurst()
            session.replace(whenDrained: drained)
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
            guard session.mayWrite, let context else { return }
            writeText(text, context: context)
            context.flush()
        }
    }

    /// Stops taking frames and hands over what was read (used on shutdown).
    func quiesce() -> EventLoopFuture<Void> {
        eventLoop.submit { [self] in
            pushBurst()
            session.stop()
        }
    }

    // MARK: - Writing

    func writeAck(_ seq: UInt64, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: Ack.size)
        buffer.writeBytes(Ack(seq: seq).encoded())
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: buffer)), promise: nil)
    }

    func writeText(_ text: String, context: ChannelHandlerContext) {
        let buffer = context.channel.allocator.buffer(string: text)
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
    }

    func closeSocket(_ reason: CloseReason) {
        guard let context, session.close() else { return }
        logger.info("closing device connection", metadata: ["reason": "\(reason.rawValue)", "code": "\(reason.code)"])
        var data = context.channel.allocator.buffer(capacity: 2 + reason.rawValue.utf8.count)
        data.writeInteger(reason.code)
        data.writeString(reason.rawValue)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in context.close(promise: nil) }
    }

    /// A tick of the loop's heartbeat (`LoopHeartbeat`): ping, or close a silent device.
    func beat(intervalNanos: UInt64) {
        guard let context else { return }
        switch session.beat(nowNanos: environment.clock.uptimeNanos(), intervalNanos: intervalNanos) {
        case .close?: closeSocket(.heartbeatTimeout)
        case .ping?: context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0))), promise: nil)
        case nil: break
        }
    }
}
