import Foundation
import NIOHTTP1

/// One REST call, parsed: what a route handler gets.
struct RESTRequest: Sendable {
    let method: HTTPMethod
    let path: [Substring]
    let query: [String: String]
    let body: [UInt8]
    let access: APITokens.Access
    /// Values of `:name` segments of the matched route.
    var parameters: [String: String] = [:]

    /// The body as a JSON object; `{}` for an empty body.
    func jsonObject() throws(RESTError) -> [String: Any] {
        if body.isEmpty { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw RESTError(.badRequest, "bad_request", "the body must be a JSON object")
        }
        return object
    }
}

/// A REST failure with the contract's error body.
struct RESTError: Error {
    let status: HTTPResponseStatus
    let code: String
    let message: String

    init(_ status: HTTPResponseStatus, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func notFound(_ what: String) -> RESTError { RESTError(.notFound, "not_found", what) }

    var reply: HTTPReply { .error(status, code: code, message) }
}

extension HTTPReply {
    /// A JSON answer from a JSON-compatible value.
    static func json(_ status: HTTPResponseStatus, _ value: Any) -> HTTPReply {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])) ?? Data("null".utf8)
        return HTTPReply(status: status, body: String(decoding: data, as: UTF8.self))
    }

    static let noContent = HTTPReply(status: .noContent, body: "")
}
