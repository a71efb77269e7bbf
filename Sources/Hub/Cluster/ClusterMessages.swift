import Foundation
import HubIngest
import HubProtocol

/// A presence change as it travels between nodes: the contract's event and the device's
/// storage key (presence is ordered per key, `PresenceOrder`).
struct PresenceNote: Codable, Sendable {
    /// The node that holds (or held) the connection.
    var node: String
    var key: Int32
    var event: Presence

    func encoded() -> [UInt8] {
        Array(#"{"node":"\#(node)","key":\#(key),"event":\#(event.json)}"#.utf8)
    }
}

/// A node's interest and heartbeat: the device patterns of all its dashboards. `version`
/// only grows (it starts from the node's start time), so an older note is ignored.
struct InterestNote: Codable, Sendable {
    var node: String
    var version: UInt64
    var patterns: [String]
}

/// A command as it travels between nodes.
struct CommandNote: Codable, Sendable {
    var id: String
    var device: String
    var name: String
    var params: String
    var status: String
    var result: String?
    var error: String?
    var created: Int64
    var updated: Int64
    var expires: Int64

    init(_ command: Command) {
        (id, device, name, params, status) = (command.id, command.device, command.name, command.paramsJSON, command.status.rawValue)
        (result, error, created, updated, expires) = (
            command.resultJSON, command.error, command.createdMicros, command.updatedMicros, command.expiresMicros
        )
    }

    var command: Command? {
        CommandStatus(rawValue: status).map {
            Command(
                id: id, device: device, name: name, paramsJSON: params, status: $0, resultJSON: result, error: error,
                createdMicros: created, updatedMicros: updated, expiresMicros: expires)
        }
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
