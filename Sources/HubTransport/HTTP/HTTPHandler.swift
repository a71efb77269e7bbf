import Dispatch
import HubIngest
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Answers every request that was not upgraded to a WebSocket: the REST API, the
/// operations endpoints, the page, and the HTTP status of a refused upgrade. Each request
/// is classified (`HubRequest`) and decided (`RequestGate`) once, on its head; a refused
/// upgrade comes with the upgrader's decision (`RequestRefused`) instead.
///
/// One request at a time: the next is not read until the answer to the previous one has
/// been written to the socket (a pipelining peer that never reads holds at most one
/// answer here). A REST request's credential is checked on its head, before its body is
/// read; a refused one is answered at once and the connection closed.
final class HTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Body {
        /// Collected for the route.
        case reading([UInt8])
        /// Not collected: the answer is already decided (a refusal, or 413).
        case ignored(HTTPReply)
    }

    private let environment: HTTPEnvironment
    private let timeouts: HTTPTimeouts?
    private var request: HubRequest?
    private var access: APITokens.Access?
    private var body = Body.reading([])
    /// Request parts that arrived while an answer was still being written; handled in
    /// order once it has been. At most one request: the pipelining handler in front
    /// delivers the next only after this one's answer.
    private var waiting: [HTTPServerRequestPart] = []
    /// From a request's end until its answer is on the socket.
    private var answering = false
    private var readPending = false
    private var closing = false
    /// The upgrader's refusal of the request that comes next.
    private var refused: HTTPReply?

    init(environment: HTTPEnvironment, timeouts: HTTPTimeouts?) {
        self.environment = environment
        self.timeouts = timeouts
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard !closing else { return }  // the answer said close: nothing more is read
        guard !answering, waiting.isEmpty else {
            waiting.append(part)
            return
        }
        handle(part, context: context)
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        guard !closing else { return }
        switch part {
        case .head(let head):
            timeouts?.headReceived()
            let request = HubRequest(head)
            self.request = request
            access = nil
            body = .reading([])
            let decision = refused.map(RequestGate.Decision.refused)
                ?? environment.gate.decide(request, address: HubServer.host(context.channel.remoteAddress))
            refused = nil
            switch decision {
            case .refused(let reply):
                body = .ignored(reply)
                // Answer now and read nothing more (the body of a refused request is never read).
                if reply.close { finish(request, context: context) }
            case .device, .dashboard, .provision:
                // Would have been let in, but is not an upgrade (or one the WebSocket layer could not take).
                body = .ignored(.error(.upgradeRequired, code: "upgrade_required", "connect with a WebSocket upgrade"))
            case .api(let access):
                self.access = access
            case .open:
                break
            }
        case .body(let chunk):
            guard case .reading(var bytes) = body else { return }
            if bytes.count + chunk.readableBytes > environment.maxBodyBytes {
                body = .ignored(.closing(.error(.payloadTooLarge, code: "too_large", "the body is over \(environment.maxBodyBytes) bytes")))
                if let request { finish(request, context: context) }
                return
            }
            body = .reading([])  // keep one owner of the array while appending
            bytes += chunk.readableBytesView
            body = .reading(bytes)
        case .end:
            if let request { finish(request, context: context) }
        }
    }

    /// The request is complete (or refused): answer it.
    private func finish(_ request: HubRequest, context: ChannelHandlerContext) {
        self.request = nil
        answering = true
        let keepAlive = request.head.isKeepAlive
        switch body {
        case .ignored(let reply):
            respond(reply, keepAlive: keepAlive, context: context)
        case .reading(let bytes):
            switch request.endpoint {
            case .rest:
                handleREST(request, body: bytes, context: context)
            case .readiness:
                let readiness = environment.readiness
                respondLater(keepAlive: keepAlive, context: context) {
                    let state = await readiness()
                    return .text(state.ready ? .ok : .serviceUnavailable, state.detail + "\n")
                }
            default:
                respond(answer(request), keepAlive: keepAlive, context: context)
            }
        }
        body = .reading([])
    }

    /// `/api/v1` (the credential was checked on the head): the route table, run off the
    /// event loop's critical path as a task.
    private func handleREST(_ request: HubRequest, body: [UInt8], context: ChannelHandlerContext) {
        let keepAlive = request.head.isKeepAlive
        guard let items = RequestTarget.queryItems(request.query) else {
            respond(.error(.badRequest, code: "bad_request", "the query string is malformed (bad escape, not UTF-8, or U+0000)"), keepAlive: keepAlive, context: context)
            return
        }
        let rest = RESTRequest(
            method: request.head.method, path: request.path.split(separator: "/"), query: items, body: body, access: access ?? .readOnly)
        switch environment.router.match(rest) {
        case .failure(let error):
            respond(error.reply, keepAlive: keepAlive, context: context)
        case .success(let (handler, bound)):
            respondLater(keepAlive: keepAlive, context: context) {
                do {
                    return try await handler(bound)
                } catch let error as RESTError {
                    return error.reply
                } catch {
                    return RESTError.storage(error).reply
                }
            }
        }
    }

    /// Answers with what `work` returns, computed by the request runner (it may wait on
    /// the database).
    private func respondLater(keepAlive: Bool, context: ChannelHandlerContext, _ work: @escaping @Sendable () async -> HTTPReply) {
        let promise = context.eventLoop.makePromise(of: HTTPReply.self)
        let submitted = environment.runner.submit { promise.succeed(await work()) }
        if !submitted { promise.succeed(.error(.serviceUnavailable, code: "unavailable", "the hub is stopping")) }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { reply in
            let (handler, context) = loopBound.value
            handler.respond(reply, keepAlive: keepAlive, context: context)
        }
    }

    /// The answer of an endpoint that needs no database.
    private func answer(_ request: HubRequest) -> HTTPReply {
        switch request.endpoint {
        case .page:
            return HTTPReply(status: .ok, contentType: "text/html; charset=utf-8", body: DashboardPage.html)
        case .health:
            return .text(.ok, "ok\n")
        case .metrics:
            return HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: environment.metricsText())
        case .openAPI:
            return HTTPReply(status: .ok, body: OpenAPIDocument.json)
        case .openAPIMethodNotAllowed:
            var reply = HTTPReply.error(.methodNotAllowed, code: "method_not_allowed", "\(request.head.method) is not allowed here")
            reply.allow = "GET"
            return reply
        case .notFound, .device, .live, .rest, .readiness:
            return .error(.notFound, code: "not_found", "no such path: \(request.path)")
        }
    }

    private func respond(_ reply: HTTPReply, keepAlive: Bool, context: ChannelHandlerContext) {
        guard !closing else { return }
        var buffer = context.channel.allocator.buffer(capacity: reply.body.utf8.count)
        buffer.writeString(reply.body)
        var headers = HTTPHeaders()
        // A 204 carries no body and no body headers.
        if reply.status != .noContent {
            headers.add(name: "content-type", value: reply.contentType)
            headers.add(name: "content-length", value: String(buffer.readableBytes))
        }
        if let seconds = reply.retryAfterSeconds { headers.add(name: "retry-after", value: String(seconds)) }
        if let allow = reply.allow { headers.add(name: "allow", value: allow) }
        let close = reply.close || !keepAlive
        if close {
            headers.add(name: "connection", value: "close")
            closing = true
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: reply.status, headers: headers))), promise: nil)
        if buffer.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.whenComplete { _ in
            let (handler, context) = loopBound.value
            if close {
                context.close(promise: nil)
            } else {
                handler.answered(context: context)
            }
        }
    }

    /// The answer is on the socket: the next request may be read.
    private func answered(context: ChannelHandlerContext) {
        answering = false
        timeouts?.answered()
        while !answering, !closing, !waiting.isEmpty { handle(waiting.removeFirst(), context: context) }
        if !answering, readPending {
            readPending = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        guard !answering, !closing else {
            readPending = true
            return
        }
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? RequestRefused {
            refused = event.reply
            return
        }
        if event is WriteWatchdog.Expired { closing = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // An upgrade the WebSocket layer could not take (a bad key or version) arrives
        // here as an error before the request itself, which then gets its status.
        if error is NIOWebSocketUpgradeError { return }
        context.close(promise: nil)
    }
}

/// What the HTTP routes read.
struct HTTPEnvironment: Sendable {
    let gate: RequestGate
    let metricsText: @Sendable () -> String
    let router: RESTRouter
    /// The largest request body taken; larger gets 413.
    var maxBodyBytes: Int { gate.maxBodyBytes }
    let readiness: @Sendable () async -> Readiness
    /// Runs REST calls and readiness probes.
    let runner: RequestRunner
}
