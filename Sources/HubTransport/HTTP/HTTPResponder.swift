import HubProtocol
import NIOCore
import NIOHTTP1

/// A finished HTTP answer.
struct HTTPReply: Sendable {
    var status: HTTPResponseStatus
    var contentType = "application/json"
    var body: String
    var close = false
    /// Sent as `Retry-After`.
    var retryAfterSeconds: Int?
    /// Sent as `Allow` (with a 405).
    var allow: String?

    /// The contract's error body: `{"error":{"code":…,"message":…}}`.
    static func error(_ status: HTTPResponseStatus, code: String, _ message: String) -> HTTPReply {
        HTTPReply(status: status, body: #"{"error":{"code":\#(JSON.quote(code)),"message":\#(JSON.quote(message))}}"#)
    }

    static func text(_ status: HTTPResponseStatus, _ body: String) -> HTTPReply {
        HTTPReply(status: status, contentType: "text/plain; charset=utf-8", body: body)
    }
}

/// The result of the readiness check behind `/readyz`.
public struct Readiness: Sendable {
    public var ready: Bool
    public var detail: String

    public init(ready: Bool, detail: String) {
        self.ready = ready
        self.detail = detail
    }
}
