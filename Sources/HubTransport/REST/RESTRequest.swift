import Foundation
import HubIngest
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

    /// The body as a JSON object; `{}` for an empty body. Text the database could not
    /// store (U+0000), or a member whose value nests past `StorableJSON.maxDepth`, is
    /// refused here.
    func jsonObject() throws(RESTError) -> [String: Any] {
        if body.isEmpty { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw RESTError(.badRequest, "bad_request", "the body must be a JSON object (nested at most \(StorableJSON.maxDepth) levels)")
        }
        // Each member's value is a stored JSON value of its own (params, labels): checked as one.
        for (key, value) in object {
            if let why = StorableJSON.refusal(text: key) ?? StorableJSON.refusal(value) {
                throw RESTError(.badRequest, "bad_request", "\"\(key)\": \(why)")
            }
        }
        return object
    }
}

/// A REST failure with the contract's error body.
struct RESTError: Error {
    let status: HTTPResponseStatus
    let code: String
    let message: String
    /// The methods a known path takes, for a 405's `Allow`.
    var allow: [HTTPMethod] = []

    init(_ status: HTTPResponseStatus, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func notFound(_ what: String) -> RESTError { RESTError(.notFound, "not_found", what) }

    /// A failure of the storage layer, as the status a client can act on: 503 only when
    /// the database is in fact away, busy or slow; 400 when it refused the value.
    static func storage(_ error: Error) -> RESTError {
        switch error {
        case StorageFailure.unreachable: RESTError(.serviceUnavailable, "unavailable", "the database is not reachable; try again")
        case StorageFailure.timeout: RESTError(.serviceUnavailable, "timeout", "the database did not answer in time; try again")
        case StorageFailure.busy: RESTError(.serviceUnavailable, "busy", "too many requests wait for the database; try again")
        case StorageFailure.refused(let why): RESTError(.badRequest, "bad_request", "the database cannot store this: \(why)")
        default: RESTError(.internalServerError, "internal", "the request failed inside the hub")
        }
    }

    var reply: HTTPReply {
        var reply = HTTPReply.error(status, code: code, message)
        if status == .serviceUnavailable { reply.retryAfterSeconds = 1 }
        if !allow.isEmpty { reply.allow = allow.map(\.rawValue).joined(separator: ", ") }
        return reply
    }
}

extension HTTPReply {
    /// A JSON answer from a JSON-compatible value.
    static func json(_ status: HTTPResponseStatus, _ value: Any) -> HTTPReply {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])) ?? Data("null".utf8)
        return HTTPReply(status: status, body: String(decoding: data, as: UTF8.self))
    }

    static let noContent = HTTPReply(status: .noContent, body: "")
}
