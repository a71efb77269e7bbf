import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection for load tools: one request at a time.
final class HTTPLoadClient: @unchecked Sendable {
    private let channel: Channel
    private let handler: ResponseHandler

    private init(channel: Channel, handler: ResponseHandler) {
        self.channel = channel
        self.handler = handler
    }

    static func connect(host: String, port: Int, group: EventLoopGroup) async throws -> HTTPLoadClient {
        let handler = ResponseHandler()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port).get()
        return HTTPLoadClient(channel: channel, handler: handler)
    }

    /// Sends a request and returns the status and body.
    func request(_ method: HTTPMethod, _ path: String, token: String, body: String) async throws -> (status: Int, body: String) {
        let promise = channel.eventLoop.makePromise(of: (Int, String).self)
        let handler = self.handler
        let channel = self.channel
        channel.eventLoop.execute {
            handler.pending = promise
            var headers = HTTPHeaders()
            headers.add(name: "host", value: "localhost")
            headers.add(name: "authorization", value: "Bearer \(token)")
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.utf8.count))
            channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(string: body))), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let (status, text) = try await promise.futureResult.get()
        return (status, text)
    }

    func close() async {
        try? await channel.close()
    }

    private final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        var pending: EventLoopPromise<(Int, String)>?
        private var status = 0
        private var body = ""

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                status = Int(head.status.code)
                body = ""
            case .body(let buffer):
                body += String(buffer: buffer)
            case .end:
                pending?.succeed((status, body))
                pending = nil
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            pending?.fail(ChannelError.ioOnClosedChannel)
            pending = nil
        }
    }
}
