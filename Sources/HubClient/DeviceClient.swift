import Foundation
import HubProtocol
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A device's WebSocket connection to a hub, on SwiftNIO.
///
/// `connect` returns once the welcome arrived. Acks, text messages and the close code
/// arrive as `events`, or through the `onEvent` callback on the connection's event loop
/// (for load tools that react without an async hop).
public final class DeviceClient: Sendable {
    /// The hub's first message (the contract's type).
    public typealias Welcome = HubProtocol.Welcome

    public enum Event: Sendable, Equatable {
        case ack(UInt64)
        case text(String)
        /// The hub closed the connection, with its close code if it sent one.
        case closed(code: UInt16?)
    }

    public typealias Failure = ClientFailure

    public let welcome: Welcome
    public let channel: Channel
    public let events: AsyncStream<Event>

    private init(welcome: Welcome, channel: Channel, events: AsyncStream<Event>) {
        self.welcome = welcome
        self.channel = channel
        self.events = events
    }

    /// Connects `deviceID`, authenticating with `token` in the `Authorization` header (or
    /// the `?token=` query when `tokenInQuery`), and waits for the welcome.
    public static func connect(
        host: String, port: Int, deviceID: String, token: String?, tokenInQuery: Bool = false,
        maxFrameBytes: Int = 1 << 20, group: EventLoopGroup, onEvent: (@Sendable (Event) -> Void)? = nil
    ) async throws -> DeviceClient {
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        let sink: @Sendable (Event) -> Void = onEvent ?? { continuation.yield($0) }
        let welcomePromise = group.next().makePromise(of: Welcome.self)
        let channel = try await WebSocketConnector.connect(
            host: host, port: port, path: "/devices/\(deviceID)", token: token, tokenInQuery: tokenInQuery,
            maxFrameSize: maxFrameBytes, group: group, greeting: welcomePromise,
            makeHandler: { ClientFrameHandler(welcome: welcomePromise, onEvent: sink, finish: { continuation.finish() }) })
        do {
            let welcome = try await welcomePromise.futureResult.get()
            return DeviceClient(welcome: welcome, channel: channel, events: stream)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Sends a frame (written and flushed).
    public func send(_ frame: TelemetryFrame) {
        sendBinary(frame.encoded())
    }

    /// Sends raw bytes as one binary message.
    public func sendBinary(_ bytes: [UInt8], flush: Bool = true) {
        write(opcode: .binary, data: channel.allocator.buffer(bytes: bytes), flush: flush)
    }

    public func sendText(_ text: String) {
        write(opcode: .text, data: channel.allocator.buffer(string: text), flush: true)
    }

    public func flush() { channel.flush() }

    /// Sends a close frame and waits for the socket to close.
    public func close(code: UInt16 = 1000) async {
        var data = channel.allocator.buffer(capacity: 2)
        data.writeInteger(code)
        write(opcode: .connectionClose, data: data, flush: true)
        try? await channel.closeFuture.get()
    }

    /// Drops the TCP connection without a close frame, as a crashed device would.
    public func abort() async {
        try? await channel.close()
    }

    private func write(opcode: WebSocketOpcode, data: ByteBuffer, flush: Bool) {
        let frame = WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)
        if flush { channel.writeAndFlush(frame, promise: nil) } else { channel.write(frame, promise: nil) }
    }
}

/// Reads the welcome, then reports acks, texts and the close code.
private final class ClientFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let welcome: EventLoopPromise<DeviceClient.Welcome>
    private let onEvent: @Sendable (DeviceClient.Event) -> Void
    private let finish: @Sendable () -> Void
    private var welcomed = false
    private var closeCode: UInt16?

    init(welcome: EventLoopPromise<DeviceClient.Welcome>, onEvent: @escaping @Sendable (DeviceClient.Event) -> Void, finish: @escaping @Sendable () -> Void) {
        self.welcome = welcome
        self.onEvent = onEvent
        self.finish = finish
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        var payload = frame.unmaskedData
        switch frame.opcode {
        case .text:
            let text = payload.readString(length: payload.readableBytes) ?? ""
            if !welcomed {
                welcomed = true
                if let parsed = Self.parseWelcome(text) { welcome.succeed(parsed) } else { welcome.fail(DeviceClient.Failure.noWelcome) }
            } else {
                onEvent(.text(text))
            }
        case .binary:
            let bytes = payload.readBytes(length: payload.readableBytes) ?? []
            if let ack = Ack(decoding: bytes) { onEvent(.ack(ack.seq)) }
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: payload)), promise: nil)
        case .connectionClose:
            closeCode = payload.readInteger(as: UInt16.self)
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.writeInteger(closeCode ?? 1000)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: reply)))
                .whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onEvent(.closed(code: closeCode))
        finish()
        context.fireChannelInactive()
    }

    static func parseWelcome(_ text: String) -> Welcome? {
        guard MessageEnvelope.read(text)?.type == .some(.some(Welcome.type)) else { return nil }
        return try? Welcome.decode(text)
    }
}
