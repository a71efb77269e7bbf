import Foundation

/// What the client needs from the server's `INFO`.
///
/// Only `max_payload` is required: without it the client cannot know which publishes the
/// server would refuse (it closes the connection on one). An `INFO` that is not a JSON
/// object, or whose `max_payload` is missing or not a positive integer, is refused and the
/// connection is closed.
struct ServerInfo: Decodable, Equatable, Sendable {
    var serverID: String?
    var version: String?
    /// The largest message body the server accepts, headers and payload together.
    var maxPayload: Int
    /// Whether the server supports `HPUB`/`HMSG`.
    var headers: Bool

    enum CodingKeys: String, CodingKey {
        case serverID = "server_id", version, maxPayload = "max_payload", headers
    }

    init(serverID: String? = nil, version: String? = nil, maxPayload: Int, headers: Bool = false) {
        self.serverID = serverID
        self.version = version
        self.maxPayload = maxPayload
        self.headers = headers
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        serverID = try container.decodeIfPresent(String.self, forKey: .serverID)
        version = try container.decodeIfPresent(String.self, forKey: .version)
        maxPayload = try container.decode(Int.self, forKey: .maxPayload)
        headers = try container.decodeIfPresent(Bool.self, forKey: .headers) ?? false
        guard maxPayload > 0 else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxPayload, in: container, debugDescription: "max_payload must be positive")
        }
    }

    /// The `INFO` JSON as the parser hands it out, or `nil` when it breaks the rules above.
    init?(json: String) {
        guard let info = try? JSONDecoder().decode(ServerInfo.self, from: Data(json.utf8)) else { return nil }
        self = info
    }
}
