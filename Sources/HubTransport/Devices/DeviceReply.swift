import Foundation
import HubProtocol

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

    /// Reads one text message of at most `maxBytes` into the contract's `CommandAck` or
    /// `CommandResult`. On this path (two messages per command) the text is parsed by
    /// `JSONSerialization` and the types filled from it: about 3 µs a reply, against 9 µs
    /// (an empty `result`) to 29 µs (a small object) through `JSONDecoder`, whose reading
    /// of a free-form value tries each JSON kind in turn.
    static func parse(_ bytes: Data, maxBytes: Int) -> Result<DeviceReply, Refusal> {
        guard bytes.count <= maxBytes else {
            return .failure(Refusal(code: "too_large", message: "text messages may have at most \(maxBytes) bytes"))
        }
        guard let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any], let type = object["type"] as? String else {
            return .failure(Refusal(code: "bad_message", message: "expected a JSON object with a \"type\""))
        }
        switch type {
        case CommandAck.type:
            guard let id = object["id"] as? String else {
                return .failure(Refusal(code: "bad_message", message: "command_ack needs a string \"id\""))
            }
            return .success(.acknowledged(id: id))
        case CommandResult.type:
            guard let id = object["id"] as? String, let ok = JSONNumber.boolean(object["ok"]) else {
                return .failure(Refusal(code: "bad_message", message: "command_result needs a string \"id\" and a boolean \"ok\""))
            }
            let reply = CommandResult(
                id: id, ok: ok, result: object["result"].map(JSONValue.init(foundation:)), error: object["error"].map(JSONValue.init(foundation:)))
            return finished(reply)
        default:
            return .failure(Refusal(code: "bad_message", message: "unknown message type \(type)"))
        }
    }

    /// A result, once it is known to be storable.
    static func finished(_ reply: CommandResult) -> Result<DeviceReply, Refusal> {
        // What the database cannot store is refused here, before it reaches the shared
        // command writer; the command stays as it was.
        if let why = reply.result.flatMap(StorableJSON.refusal) ?? reply.error.flatMap(StorableJSON.refusal) {
            return .failure(Refusal(code: "bad_message", message: "command_result cannot be stored: \(why)"))
        }
        let error = reply.error.map { error -> String in
            if case .string(let text) = error { return text }
            return error.json
        }
        return .success(.finished(id: reply.id, ok: reply.ok, resultJSON: reply.result?.json, error: error))
    }
}
