import Foundation

/// The OpenAPI 3.1 document of the REST API (`docs/openapi.json`), shipped in the binary
/// and served at `GET /api/v1/openapi.json` without a credential: it describes the API,
/// it holds no data.
enum OpenAPIDocument {
    static let path: Substring = "/api/v1/openapi.json"

    static let json: String = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else { return #"{"error":{"code":"missing","message":"the OpenAPI document is missing from this build"}}"# }
        return text
    }()
}
