import Dispatch
import HubIngest
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Answers every request that was not upgraded to a WebSocket: the REST API, the
/// operations endpoints, the page, and the HTTP status of a refused upgrade. The routing
/// is the table in `route`.
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
    private var head: HTTPRequestHead?
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
    /// The upgrader's verdict on this request when it refused it.
    var refusal: HTTPReply?

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
            self.head = head
            access = nil
            body = .reading([])
            if let refusal = self.refusal ?? admit(head, context: context) {
                self.refusal = nil
                body = .ignored(refusal)
                if refusal.close {
                    // Answer now and read nothing more (the body of a refused request is never read).
                    finish(head, context: context)
                }
            }
        case .body(let chunk):
            guard case .reading(var bytes) = body else { return }
            if bytes.count + chunk.readableBytes > environment.maxBodyBytes {
                body = .ignored(.closing(.error(.payloadTooLarge, code: "too_large", "the body is over \(environment.maxBodyBytes) bytes")))
                if let head { finish(head, context: context) }
                return
            }
            body = .reading([])  // keep one owner of the array while appending
            bytes += chunk.readableBytesView
            body = .reading(bytes)
        case .end:
            if let head { finish(head, context: context) }
        }
    }

    /// Checks a request on its head: the page's and the API's browser origin, and the API's
    /// credential. - Returns: the answer when the request is refused.
    private func admit(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> HTTPReply? {
        let path = RequestTarget.split(head.uri).path
        if path == "/" || path.hasPrefix("/api/"), let origin = environment.admission.refusedOrigin(head) { return origin }
        // The credential before the size: a refused request learns nothing else.
        if path.hasPrefix("/api/"), path != OpenAPIDocument.path, let refusal = authenticate(head, context: context) { return refusal }
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > environment.maxBodyBytes {
            return .closing(.error(.payloadTooLarge, code: "too_large", "the body is over \(environment.maxBodyBytes) bytes"))
        }
        return nil
    }

    /// The API credential of `head`. - Returns: the refusal, or `nil` with `access` set.
    private func authenticate(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> HTTPReply? {
        let address = HubServer.host(context.channel.remoteAddress)
        let now = environment.clock.uptimeNanos()
        if environment.gate.failures.isBlocked(address, nowNanos: now) { return environment.gate.tooManyFailures(address, now) }
        guard let access = environment.gate.tokens.access(for: RequestTarget.bearerToken(head.headers)) else {
            environment.gate.failures.recordFailure(address, nowNanos: now)
            return .closing(.error(.unauthorized, code: "unauthorized", "missing or invalid API token"))
        }
        if access == .readOnly && head.method != .GET {
            environment.gate.failures.recordFailure(address, nowNanos: now)
            return .closing(.error(.forbidden, code: "forbidden", "a read-only token cannot change anything"))
        }
        self.access = access
        return nil
    }

    /// The request is complete (or refused): answer it.
    private func finish(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        self.head = nil
        answering = true
        let keepAlive = head.isKeepAlive
        switch body {
        case .ignored(let reply):
            respond(reply, keepAlive: keepAlive, context: context)
        case .reading(let bytes):
            let path = RequestTarget.split(head.uri).path
            if path.hasPrefix("/api/") && path != OpenAPIDocument.path {
                handleREST(head, body: bytes, context: context)
            } else if head.method == .GET, path == "/readyz" {
                let readiness = environment.readiness
                respondLater(keepAlive: keepAlive, context: context) {
                    let state = await readiness()
                    return .text(state.ready ? .ok : .serviceUnavailable, state.detail + "\n")
                }
            } else {
                respond(route(head, context: context), keepAlive: keepAlive, context: context)
            }
        }
        body = .reading([])
    }

    /// `/api/v1` (the credential was checked on the head): the route table, run off the
    /// event loop's critical path as a task.
    private func handleREST(_ head: HTTPRequestHead, body: [UInt8], context: ChannelHandlerContext) {
        let keepAlive = head.isKeepAlive
        let (path, query) = RequestTarget.split(head.uri)
        guard let items = RequestTarget.queryItems(query) else {
            respond(.error(.badRequest, code: "bad_request", "the query string is malformed (bad escape, not UTF-8, or U+0000)"), keepAlive: keepAlive, context: context)
            return
        }
        let request = RESTRequest(
            method: head.method, path: path.split(separator: "/"), query: items, body: body, access: access ?? .readOnly)
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

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> HTTPReply {
        let (path, _) = RequestTarget.split(head.uri)
        switch (head.method, path) {
        case (.GET, "/"):
            return HTTPReply(status: .ok, contentType: "text/html; charset=utf-8", body: DashboardPage.html)
        case (.GET, "/healthz"):
            return .text(.ok, "ok\n")
        case (.GET, "/metrics"):
            return HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: environment.metricsText())
        case (.GET, OpenAPIDocument.path):
            return HTTPReply(status: .ok, body: OpenAPIDocument.json)
        case (_, OpenAPIDocument.path):
            var reply = HTTPReply.error(.methodNotAllowed, code: "method_not_allowed", "\(head.method) is not allowed here")
            reply.allow = "GET"
            return reply
        case (_, let path) where UpgradeGate.isUpgradePath(path):
            // Not an upgrade (or one the WebSocket layer could not take): the same checks,
            // then 426 for a request that would have been let in.
            switch environment.gate.verdict(head, address: HubServer.host(context.channel.remoteAddress)) {
            case .refused(let reply): return reply
            case .device, .dashboard, .provision:
                return .error(.upgradeRequired, code: "upgrade_required", "connect with a WebSocket upgrade")
            }
        default:
            return .error(.notFound, code: "not_found", "no such path: \(path)")
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
        if event is WriteWatchdog.Expired { closing = true }
        context.fireUserInboundEventTriggered(event)
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
    let gate: UpgradeGate
    let metricsText: @Sendable () -> String
    let router: RESTRouter
    /// The largest request body taken; larger gets 413.
    let maxBodyBytes: Int
    let readiness: @Sendable () async -> Readiness
    /// Runs REST calls and readiness probes.
    let runner: RequestRunner
    let clock: any HubClock
    var admission: Admission { gate.admission }
}
