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

    /// Reads one text message of at most `maxBytes` (the contract's `CommandAck` and
    /// `CommandResult`).
    static func parse(_ bytes: Data, maxBytes: Int) -> Result<DeviceReply, Refusal> {
        guard bytes.count <= maxBytes else {
            return .failure(Refusal(code: "too_large", message: "text messages may have at most \(maxBytes) bytes"))
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let envelope = MessageEnvelope.read(text), case let type?? = envelope.type else {
            return .failure(Refusal(code: "bad_message", message: "expected a JSON object with a \"type\""))
        }
        switch type {
        case CommandAck.type:
            guard let ack = try? CommandAck.decode(text) else {
                return .failure(Refusal(code: "bad_message", message: "command_ack needs a string \"id\""))
            }
            return .success(.acknowledged(id: ack.id))
        case CommandResult.type:
            guard let reply = try? CommandResult.decode(text) else {
                return .failure(Refusal(code: "bad_message", message: "command_result needs a string \"id\" and a boolean \"ok\""))
            }
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
        default:
            return .failure(Refusal(code: "bad_message", message: "unknown message type \(type)"))
        }
    }
}
