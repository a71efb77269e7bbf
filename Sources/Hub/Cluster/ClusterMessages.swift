import Foundation
import HubIngest
import HubProtocol

/// A presence change as it travels between nodes: the contract's event and the device's
/// storage key (presence is ordered per key, `PresenceOrder`).
struct PresenceNote: Codable, Sendable {
    var key: Int32
    var event: Presence

    func encoded() -> [UInt8] {
        Array(#"{"key":\#(key),"event":\#(event.json)}"#.utf8)
    }
}

/// What a node asks another to drain before it claims those devices.
struct DrainRequest: Codable, Sendable {
    var devices: [DrainItem]
}

/// The answer, once every connection asked for is drained (or the node's bound passed).
struct DrainReply: Codable, Sendable {
    var drained: Int
}

extension Decodable {
    /// Decodes a message from another node; `nil` if it is not one.
    static func decoded(from payload: [UInt8]) -> Self? {
        try? JSONDecoder().decode(Self.self, from: Data(payload))
    }
}
