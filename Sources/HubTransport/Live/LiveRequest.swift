import NIOHTTP1

/// The `/live` upgrade request: its path and API token (header or `?token=`).
enum LiveRequest {
    static func isLivePath(_ uri: String) -> Bool {
        RequestTarget.split(uri).path == "/live"
    }

    static func access(_ head: HTTPRequestHead, tokens: APITokens) -> APITokens.Access? {
        let (_, query) = RequestTarget.split(head.uri)
        return tokens.access(for: RequestTarget.bearerToken(head.headers) ?? RequestTarget.queryValue(query, name: "token"))
    }
}
