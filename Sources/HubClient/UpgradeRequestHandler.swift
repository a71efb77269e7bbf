import NIOCore
import NIOHTTP1

/// Why a client connection failed.
public enum ClientFailure: Error, Equatable, CustomStringConvertible {
    /// The hub answered the upgrade with an HTTP status instead of 101.
    case refused(status: Int)
    case noWelcome

    public var description: String {
        switch self {
        case .refused(let status): "the hub refused the connection with HTTP \(status)"
        case .noWelcome: "the connection closed before the welcome"
        }
    }
}

/// Sends the upgrade request, and turns a non-101 answer into `Failure.refused`.
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let path: String
    private let headers: HTTPHeaders
    private let fail: (Error) -> Void

    init(path: String, headers: HTTPHeaders, fail: @escaping (Error) -> Void) {
        self.path = path
        self.headers = headers
        self.fail = fail
    }

    func channelActive(context: ChannelHandlerContext) {
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let response) = unwrapInboundIn(data) {
            fail(ClientFailure.refused(status: Int(response.status.code)))
            context.close(promise: nil)
        }
    }
}

