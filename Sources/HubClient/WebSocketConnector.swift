import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Opens a client WebSocket to the hub: the upgrade request (credentials in `headers` or
/// the path), then `makeHandler()`'s handler reads the frames.
enum WebSocketConnector {
    /// Connects and starts the upgrade. `greeting` is failed if the connection cannot be
    /// made, is refused (`ClientFailure.refused`), or closes before it is fulfilled.
    static func connect<Greeting: Sendable>(
        host: String, port: Int, path: String, token: String?, tokenInQuery: Bool, maxFrameSize: Int,
        group: EventLoopGroup, greeting: EventLoopPromise<Greeting>,
        makeHandler: @escaping @Sendable () -> ChannelHandler
    ) async throws -> Channel {
        var target = path
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        if let token {
            if tokenInQuery { target += "?token=\(token)" } else { headers.add(name: "authorization", value: "Bearer \(token)") }
        }
        let requestTarget = target
        let requestHeaders = headers
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let request = UpgradeRequestHandler(path: requestTarget, headers: requestHeaders, fail: { greeting.fail($0) })
                        let boundRequest = NIOLoopBound(request, eventLoop: channel.eventLoop)
                        let upgrader = NIOWebSocketClientUpgrader(
                            maxFrameSize: maxFrameSize, automaticErrorHandling: true,
                            upgradePipelineHandler: { channel, _ in
                                channel.eventLoop.makeCompletedFuture {
                                    try channel.pipeline.syncOperations.addHandler(makeHandler())
                                }
                            })
                        try channel.pipeline.syncOperations.addHTTPClientHandlers(
                            leftOverBytesStrategy: .forwardBytes,
                            withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                                // After the 101 the request handler must not see WebSocket bytes.
                                context.pipeline.syncOperations.removeHandler(boundRequest.value, promise: nil)
                            }))
                        try channel.pipeline.syncOperations.addHandler(request)
                    }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            // Never leave the promise unfulfilled: NIO treats that as a bug.
            greeting.fail(error)
            throw error
        }
        channel.closeFuture.whenComplete { _ in greeting.fail(ClientFailure.noWelcome) }
        return channel
    }
}
