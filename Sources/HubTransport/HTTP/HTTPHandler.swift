import HubIngest
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Answers every request that was not upgraded to a WebSocket: the operations endpoints,
/// and the HTTP status for a refused device upgrade. The routing is the table in `route`.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let environment: HTTPEnvironment
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    /// Set by the upgrader when it refused this request's upgrade for a limit or an origin.
    var refusal: HTTPReply?

    init(environment: HTTPEnvironment) {
        self.environment = environment
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            bodyTooLarge = false
        case .body(let chunk):
            if body.count + chunk.readableBytes > environment.maxBodyBytes {
                bodyTooLarge = true
            } else if !bodyTooLarge {
                body += chunk.readableBytesView
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let path = RequestTarget.split(head.uri).path
            if let refusal = refusal ?? (path == "/" || path.hasPrefix("/api/") ? environment.admission.refusedOrigin(head) : nil) {
                self.refusal = nil
                respond(refusal, keepAlive: head.isKeepAlive && !refusal.close, context: context)
            } else if bodyTooLarge {
                var reply = HTTPReply.error(.payloadTooLarge, code: "too_large", "the body is over \(environment.maxBodyBytes) bytes")
                reply.close = true
                respond(reply, keepAlive: false, context: context)
            } else if RequestTarget.split(head.uri).path.hasPrefix("/api/") {
                handleREST(head, body: body, context: context)
            } else if head.method == .GET, RequestTarget.split(head.uri).path == "/readyz" {
                let readiness = environment.readiness
                respondLater(keepAlive: head.isKeepAlive, context: context) {
                    let state = await readiness()
                    return .text(state.ready ? .ok : .serviceUnavailable, state.detail + "\n")
                }
            } else {
                respond(route(head), keepAlive: head.isKeepAlive, context: context)
            }
        }
    }

    /// `/api/v1`: the API token first (401, and 403 for a read-only token on a change),
    /// then the route table, run off the event loop's critical path as a task.
    private func handleREST(_ head: HTTPRequestHead, body: [UInt8], context: ChannelHandlerContext) {
        let keepAlive = head.isKeepAlive
        guard let access = environment.tokens.access(for: RequestTarget.bearerToken(head.headers)) else {
            respond(.error(.unauthorized, code: "unauthorized", "missing or invalid API token"), keepAlive: keepAlive, context: context)
            return
        }
        if access == .readOnly && head.method != .GET {
            respond(.error(.forbidden, code: "forbidden", "a read-only token cannot change anything"), keepAlive: keepAlive, context: context)
            return
        }
        let (path, query) = RequestTarget.split(head.uri)
        let request = RESTRequest(
            method: head.method, path: path.split(separator: "/"), query: RequestTarget.queryItems(query), body: body,
            access: access)
        switch environment.router.match(request) {
        case .failure(let error):
            respond(error.reply, keepAlive: keepAlive, context: context)
        case .success(let (handler, bound)):
            respondLater(keepAlive: keepAlive, context: context) {
                do {
                    return try await handler(bound)
                } catch let error as RESTError {
                    return error.reply
                } catch {
                    return .error(.serviceUnavailable, code: "unavailable", "the database is not reachable; try again")
                }
            }
        }
    }

    /// Answers with what `work` returns, computed as a task (it may wait on the database).
    private func respondLater(keepAlive: Bool, context: ChannelHandlerContext, _ work: @escaping @Sendable () async -> HTTPReply) {
        let promise = context.eventLoop.makePromise(of: HTTPReply.self)
        promise.completeWithTask(work)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { reply in
            let (handler, context) = loopBound.value
            handler.respond(reply, keepAlive: keepAlive, context: context)
        }
    }

    private func route(_ head: HTTPRequestHead) -> HTTPReply {
        let (path, _) = RequestTarget.split(head.uri)
        switch (head.method, path) {
        case (.GET, "/"):
            return HTTPReply(status: .ok, contentType: "text/html; charset=utf-8", body: DashboardPage.html)
        case (.GET, "/healthz"):
            return .text(.ok, "ok\n")
        case (.GET, "/metrics"):
            return HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: environment.metricsText())
        case (_, let path) where path.hasPrefix(DeviceRequest.pathPrefix):
            return deviceRefusal(head)
        case (_, "/live"):
            guard LiveRequest.access(head, tokens: environment.tokens) != nil else {
                var reply = HTTPReply.error(.unauthorized, code: "unauthorized", "missing or invalid API token")
                reply.close = true
                return reply
            }
            return .error(.upgradeRequired, code: "upgrade_required", "connect with a WebSocket upgrade")
        default:
            return .error(.notFound, code: "not_found", "no such path: \(path)")
        }
    }

    /// Why a request on a device path was not upgraded.
    private func deviceRefusal(_ head: HTTPRequestHead) -> HTTPReply {
        do throws(DeviceRequest.Refusal) {
            let request = try DeviceRequest(head: head)
            let verdict = try request.authenticate(environment.registry)
            if case .provision = verdict {
                return .error(.serviceUnavailable, code: "unavailable", "could not register the device; try again")
            }
            return .error(.upgradeRequired, code: "upgrade_required", "connect with a WebSocket upgrade")
        } catch {
            var reply = HTTPReply.error(error.status, code: error.code, error.message)
            reply.close = true
            if error.status == .serviceUnavailable { reply.retryAfterSeconds = 1 }
            return reply
        }
    }

    private func respond(_ reply: HTTPReply, keepAlive: Bool, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: reply.body.utf8.count)
        buffer.writeString(reply.body)
        var headers = HTTPHeaders()
        // A 204 carries no body and no body headers.
        if reply.status != .noContent {
            headers.add(name: "content-type", value: reply.contentType)
            headers.add(name: "content-length", value: String(buffer.readableBytes))
        }
        if let seconds = reply.retryAfterSeconds { headers.add(name: "retry-after", value: String(seconds)) }
        let close = reply.close || !keepAlive
        if close { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: reply.status, headers: headers))), promise: nil)
        if buffer.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if close { done.whenComplete { _ in context.close(promise: nil) } }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A refused upgrade arrives here as an error before the request itself; the
        // request then gets its status from `route`.
        if error is NIOWebSocketUpgradeError { return }
        context.close(promise: nil)
    }
}

/// What the HTTP routes read.
struct HTTPEnvironment: Sendable {
    let registry: DeviceRegistry
    let tokens: APITokens
    let metricsText: @Sendable () -> String
    let router: RESTRouter
    /// The largest request body taken; larger gets 413.
    let maxBodyBytes: Int
    let readiness: @Sendable () async -> Readiness
    let admission: Admission
}
