import Foundation

/// A device's text message, read once: `command_ack` or `command_result`, checked so that
/// what reaches the shared command writer can be stored.
enum DeviceReply: Equatable {
    case acknowledged(id: String)
    case finished(id: String, ok: Bool, resultJSON: String?, error: String?)

    /// Why a text message is refused: the `error` message's code and text.
    struct Refusal: Error, Equatable {
        var code: String
        var message: String
    }

    /// Reads one text message of at most `maxBytes`.
    static func parse(_ bytes: Data, maxBytes: Int) -> Result<DeviceReply, Refusal> {
        guard bytes.count <= maxBytes else {
            return .failure(Refusal(code: "too_large", message: "text messages may have at most \(maxBytes) bytes"))
        }
        guard let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any], let type = object["type"] as? String else {
            return .failure(Refusal(code: "bad_message", message: "expected a JSON object with a \"type\""))
        }
        switch type {
        case "command_ack":
            guard let id = object["id"] as? String else {
                return .failure(Refusal(code: "bad_message", message: "command_ack needs a string \"id\""))
            }
            return .success(.acknowledged(id: id))
        case "command_result":
            guard let id = object["id"] as? String, let ok = JSONNumber.boolean(object["ok"]) else {
                return .failure(Refusal(code: "bad_message", message: "command_result needs a string \"id\" and a boolean \"ok\""))
            }
            // What the database cannot store is refused here, before it reaches the shared
            // command writer; the command stays as it was.
            if let why = object["result"].flatMap(StorableJSON.refusal) ?? object["error"].flatMap(StorableJSON.refusal) {
                return .failure(Refusal(code: "bad_message", message: "command_result cannot be stored: \(why)"))
            }
            let result = object["result"].flatMap(CommandJSON.text)
            let error = object["error"].map { ($0 as? String) ?? CommandJSON.text($0) ?? "failed" }
            return .success(.finished(id: id, ok: ok, resultJSON: result, error: error))
        default:
            return .failure(Refusal(code: "bad_message", message: "unknown message type \(type)"))
        }
    }
}
