/// The text messages between a device and the hub (contract sections 1 and 2).

/// The hub's first message on a device connection.
public struct Welcome: HubMessage {
    public static let type = "welcome"
    public var device: String
    public var connection: String
    public var session: Int64
    public var lastSeq: UInt64
    public var serverTimeMicros: Int64
    public var maxFrameBytes: Int
    public var heartbeatSeconds: Int

    public init(
        device: String, connection: String, session: Int64, lastSeq: UInt64, serverTimeMicros: Int64, maxFrameBytes: Int,
        heartbeatSeconds: Int
    ) {
        self.device = device
        self.connection = connection
        self.session = session
        self.lastSeq = lastSeq
        self.serverTimeMicros = serverTimeMicros
        self.maxFrameBytes = maxFrameBytes
        self.heartbeatSeconds = heartbeatSeconds
    }

    private enum CodingKeys: String, CodingKey {
        case device, connection, session
        case lastSeq = "last_seq"
        case serverTimeMicros = "server_time_us"
        case maxFrameBytes = "max_frame_bytes"
        case heartbeatSeconds = "heartbeat_s"
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"welcome","device":"#)
        writer.string(device)
        writer.raw(#","connection":"#)
        writer.string(connection)
        writer.raw(#","session":"#)
        writer.integer(session)
        writer.raw(#","last_seq":"#)
        writer.unsigned(lastSeq)
        writer.raw(#","server_time_us":"#)
        writer.integer(serverTimeMicros)
        writer.raw(#","max_frame_bytes":"#)
        writer.integer(maxFrameBytes)
        writer.raw(#","heartbeat_s":"#)
        writer.integer(heartbeatSeconds)
        writer.raw("}")
    }
}

/// A frame the hub did not store; `seq` is `nil` when the frame was unreadable.
public struct Rejected: HubMessage {
    public static let type = "rejected"
    public var seq: UInt64?
    public var reason: String

    public init(seq: UInt64?, reason: String) {
        self.seq = seq
        self.reason = reason
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"rejected","seq":"#)
        if let seq { writer.unsigned(seq) } else { writer.null() }
        writer.raw(#","reason":"#)
        writer.string(reason)
        writer.raw("}")
    }
}

/// A command for the device.
public struct DeviceCommand: HubMessage {
    public static let type = "command"
    public var id: String
    public var name: String
    /// A JSON object, as stored.
    public var params: RawJSON
    public var expiresAtMicros: Int64

    public init(id: String, name: String, params: RawJSON, expiresAtMicros: Int64) {
        self.id = id
        self.name = name
        self.params = params
        self.expiresAtMicros = expiresAtMicros
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, params
        case expiresAtMicros = "expires_at_us"
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"command","id":"#)
        writer.string(id)
        writer.raw(#","name":"#)
        writer.string(name)
        writer.raw(#","params":"#)
        writer.raw(params.text)
        writer.raw(#","expires_at_us":"#)
        writer.integer(expiresAtMicros)
        writer.raw("}")
    }
}

/// The device has the command.
public struct CommandAck: HubMessage {
    public static let type = "command_ack"
    public var id: String

    public init(id: String) {
        self.id = id
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"command_ack","id":"#)
        writer.string(id)
        writer.raw("}")
    }
}

/// The device ran the command: `ok` with a `result`, or not with an `error` (any JSON;
/// usually a string). A field given as `null` reads as `.null`, one left out as `nil`.
public struct CommandResult: HubMessage {
    public static let type = "command_result"
    public var id: String
    public var ok: Bool
    public var result: JSONValue?
    public var error: JSONValue?

    public init(id: String, ok: Bool, result: JSONValue? = nil, error: JSONValue? = nil) {
        self.id = id
        self.ok = ok
        self.result = result
        self.error = error
    }

    private enum CodingKeys: String, CodingKey { case id, ok, result, error }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        ok = try container.decode(Bool.self, forKey: .ok)
        result = try container.present(.result)
        error = try container.present(.error)
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"command_result","id":"#)
        writer.string(id)
        writer.raw(#","ok":"#)
        writer.bool(ok)
        if let result {
            writer.raw(#","result":"#)
            writer.value(result)
        }
        if let error {
            writer.raw(#","error":"#)
            writer.value(error)
        }
        writer.raw("}")
    }
}
