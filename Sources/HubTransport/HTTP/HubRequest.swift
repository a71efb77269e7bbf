import NIOHTTP1

/// A request classified once, from its head: the part of the hub it is for. Pure: the
/// credential and the limits are `RequestGate`'s, decided once with this value.
struct HubRequest {
    /// Method and path to endpoint, the whole HTTP surface in one place. The REST
    /// routes under `/api/` are one table (`RESTRouter`, built in `HubServer`).
    enum Endpoint: Equatable {
        /// `/devices` and everything under it: a device's WebSocket (a malformed id is 400).
        case device
        /// `/live`: a dashboard's WebSocket.
        case live
        /// `/api/…` except the OpenAPI document: the REST table.
        case rest
        /// `GET /`: the page.
        case page
        /// `GET /healthz`, `GET /readyz`, `GET /metrics`.
        case health, readiness, metrics
        /// The OpenAPI document: `GET`, or any other method (405).
        case openAPI, openAPIMethodNotAllowed
        case notFound
    }

    let head: HTTPRequestHead
    let path: Substring
    let query: Substring
    let endpoint: Endpoint

    init(_ head: HTTPRequestHead) {
        self.head = head
        (path, query) = RequestTarget.split(head.uri)
        endpoint = Self.endpoint(head.method, path)
    }

    private static func endpoint(_ method: HTTPMethod, _ path: Substring) -> Endpoint {
        switch (method, path) {
        case (.GET, OpenAPIDocument.path): .openAPI
        case (_, OpenAPIDocument.path): .openAPIMethodNotAllowed
        case (_, _) where path.hasPrefix("/api/"): .rest
        case (_, "/live"): .live
        case (_, _) where DeviceRequest.isDevicePath(path): .device
        case (.GET, "/"): .page
        case (.GET, "/healthz"): .health
        case (.GET, "/readyz"): .readiness
        case (.GET, "/metrics"): .metrics
        default: .notFound
        }
    }

    /// The WebSocket endpoints: an upgrade is what they take.
    var isWebSocket: Bool { endpoint == .device || endpoint == .live }

    /// Browser origins are checked for the page and the API (the sockets check their own).
    var checksOrigin: Bool { path == "/" || path.hasPrefix("/api/") }

    /// The credential: `Authorization: Bearer`, or `?token=` where `queryToken` allows it
    /// (the WebSockets, since browsers cannot set headers on them).
    func token(queryToken: Bool) -> String? {
        RequestTarget.bearerToken(head.headers) ?? (queryToken ? RequestTarget.queryValue(query, name: "token") : nil)
    }
}
