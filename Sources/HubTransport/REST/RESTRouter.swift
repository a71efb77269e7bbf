import NIOHTTP1

/// The REST routes: a method, a path pattern (`:name` captures a segment) and a handler.
struct RESTRouter: Sendable {
    typealias Handler = @Sendable (RESTRequest) async throws -> HTTPReply

    struct Route: Sendable {
        let method: HTTPMethod
        let pattern: [Substring]
        let handler: Handler

        init(_ method: HTTPMethod, _ pattern: String, _ handler: @escaping Handler) {
            self.method = method
            self.pattern = pattern.split(separator: "/")
            self.handler = handler
        }
    }

    let routes: [Route]

    /// Finds the route for a request: `404` for an unknown path, `405` for a known path
    /// with another method.
    func match(_ request: RESTRequest) -> Result<(Handler, RESTRequest), RESTError> {
        var allowed: [HTTPMethod] = []
        for route in routes {
            guard let parameters = Self.bind(route.pattern, request.path) else { continue }
            allowed.append(route.method)
            guard route.method == request.method else { continue }
            var bound = request
            bound.parameters = parameters
            return .success((route.handler, bound))
        }
        guard !allowed.isEmpty else { return .failure(.notFound("no such path")) }
        var error = RESTError(.methodNotAllowed, "method_not_allowed", "\(request.method) is not allowed here")
        error.allow = allowed
        return .failure(error)
    }

    private static func bind(_ pattern: [Substring], _ path: [Substring]) -> [String: String]? {
        guard pattern.count == path.count else { return nil }
        var parameters: [String: String] = [:]
        for (expected, actual) in zip(pattern, path) {
            if expected.hasPrefix(":") {
                parameters[String(expected.dropFirst())] = String(actual)
            } else if expected != actual {
                return nil
            }
        }
        return parameters
    }
}
