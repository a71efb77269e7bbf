import Foundation
import HubIngest
import HubProtocol

/// Commands as JSON: the REST object and the `/live` status message.
enum CommandJSON {
    /// The object `GET /api/v1/commands/{id}` returns.
    static func object(_ command: Command) -> [String: Any] {
        [
            "id": command.id,
            "device": command.device,
            "name": command.name,
            "params": parse(command.paramsJSON) ?? [String: Any](),
            "status": command.status.rawValue,
            "result": command.resultJSON.flatMap(parse) ?? NSNull(),
            "error": command.error.map { $0 as Any } ?? NSNull(),
            "created_us": command.createdMicros,
            "updated_us": command.updatedMicros,
            "expires_at_us": command.expiresMicros,
        ]
    }

    /// `{"type":"command_status",…}` for dashboards.
    static func status(_ command: Command, ref: String?) -> String {
        var object: [String: Any] = [
            "type": "command_status", "id": command.id, "device": command.device, "status": command.status.rawValue,
        ]
        if let ref { object["ref"] = ref }
        if let result = command.resultJSON.flatMap(parse) { object["result"] = result }
        if let error = command.error { object["error"] = error }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func parse(_ text: String) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
    }

    /// Serialises a JSON value (params or a result) to text.
    static func text(_ value: Any) -> String? {
        (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])).map { String(decoding: $0, as: UTF8.self) }
    }
}
