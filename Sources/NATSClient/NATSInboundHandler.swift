import NATS
import NIOCore

/// The channel handler of one NATS connection: feeds the bytes read into a `NATSParser`
/// and hands each operation to the connection, on the channel's event loop.
///
/// A shell with no decisions of its own. After a protocol error the parser stays failed,
/// so the connection closes the channel and reconnects with a new handler.
final class NATSInboundHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var parser = NATSParser()
    private let connection: NATSConnection

    init(connection: NATSConnection) { self.connection = connection }

    /// The largest message body accepted; set from the server's `INFO`.
    var maxPayloadLength: Int {
        get { parser.maxPayloadLength }
        set { parser.maxPayloadLength = newValue }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        // The view is contiguous: appending it is one copy, not a loop over bytes.
        parser.append(buffer.readableBytesView)
        do {
            while let op = try parser.next() {
                connection.received(op, from: self)
            }
        } catch {
            connection.protocolFailed(error, from: self)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.channelInactive(from: self)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection.becameWritable(from: self) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A socket error (a reset, say): the channel closes and channelInactive follows.
        connection.logger.debug("NATS socket error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
