import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A dashboard's `/live` connection: send JSON messages, receive every text message.
///
/// `connect` returns once the `hello` arrived. Messages arrive through `onMessage` on the
/// connection's event loop.
public final class LiveClient: Sendable {
    public let channel: Channel
    /// The `hello` message's text.
    public let hello: String

    private init(channel: Channel, hello: String) {
        self.channel = channel
        self.hello = hello
    }

    public static func connect(
        host: String, port: Int, token: String?, tokenInQuery: Bool = false, group: EventLoopGroup,
        onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable (UInt16?) -> Void = { _ in }
    ) async throws -> LiveClient {
        try await connect(
            host: host, port: port, token: token, tokenInQuery: tokenInQuery, group: group,
            onBytes: { buffer in onMessage(String(buffer: buffer)) }, onClose: onClose)
    }

    /// The same, handing each message over as bytes, on the event loop (for load tools).
    public static func connect(
        host: String, port: Int, token: String?, tokenInQuery: Bool = false, group: EventLoopGroup,
        onBytes: @escaping @Sendable (ByteBuffer) -> Void, onClose: @escaping @Sendable (UInt16?) -> Void = { _ in }
    ) async throws -> LiveClient {
        let helloPromise = group.next().makePromise(of: String.self)
        let channel = try await WebSocketConnector.connect(
            host: host, port: port, path: "/live", token: token, tokenInQuery: tokenInQuery, maxFrameSize: 1 << 24,
            group: group, greeting: helloPromise,
            makeHandler: { LiveFrameHandler(hello: helloPromise, onMessage: onBytes, onClose: onClose) })
        do {
            return LiveClient(channel: channel, hello: try await helloPromise.futureResult.get())
        } catch {
            try? await channel.close()
            throw error
        }
    }

    public func send(_ text: String) {
        channel.writeAndFlush(
            WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: channel.allocator.buffer(string: text)), promise: nil)
    }

    /// Stops reading from the socket (a dashboard that stalls), or resumes.
    public func setReading(_ enabled: Bool) async throws {
        try await channel.setOption(.autoRead, value: enabled).get()
        if enabled { channel.read() }
    }

    public func close() async {
        var data = channel.allocator.buffer(capacity: 2)
        data.writeInteger(UInt16(1000))
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data), promise: nil)
        try? await channel.closeFuture.get()
    }
}

private final class LiveFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let hello: EventLoopPromise<String>
    private let onMessage: @Sendable (ByteBuffer) -> Void
    private let onClose: @Sendable (UInt16?) -> Void
    private var greeted = false
    private var closeCode: UInt16?

    init(hello: EventLoopPromise<String>, onMessage: @escaping @Sendable (ByteBuffer) -> Void, onClose: @escaping @Sendable (UInt16?) -> Void) {
        self.hello = hello
        self.onMessage = onMessage
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        var payload = frame.unmaskedData
        switch frame.opcode {
        case .text:
            if greeted { onMessage(payload) } else {
                greeted = true
                hello.succeed(payload.readString(length: payload.readableBytes) ?? "")
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: payload)), promise: nil)
        case .connectionClose:
            closeCode = payload.readInteger(as: UInt16.self)
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose(closeCode)
        context.fireChannelInactive()
    }
}
