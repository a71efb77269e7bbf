/// The JSON text messages the hub sends a device (contract sections 1 and 2).
public enum DeviceMessages {
    public static func welcome(
        device: String, connection: String, session: Int64, lastSeq: UInt64, serverTimeMicros: Int64,
        maxFrameBytes: Int, heartbeatSeconds: Int
    ) -> String {
        #"{"type":"welcome","device":\#(JSON.quote(device)),"connection":\#(JSON.quote(connection)),"#
            + #""session":\#(session),"last_seq":\#(lastSeq),"server_time_us":\#(serverTimeMicros),"#
            + #""max_frame_bytes":\#(maxFrameBytes),"heartbeat_s":\#(heartbeatSeconds)}"#
    }

    public static func rejected(seq: UInt64?, reason: String) -> String {
        #"{"type":"rejected","seq":\#(seq.map(String.init) ?? "null"),"reason":\#(JSON.quote(reason))}"#
    }

    /// A command for the device; `paramsJSON` is a JSON object's text.
    public static func command(id: String, name: String, paramsJSON: String, expiresAtMicros: Int64) -> String {
        #"{"type":"command","id":\#(JSON.quote(id)),"name":\#(JSON.quote(name)),"params":\#(paramsJSON),"expires_at_us":\#(expiresAtMicros)}"#
    }

    public static func error(code: String, message: String) -> String {
        #"{"type":"error","code":\#(JSON.quote(code)),"message":\#(JSON.quote(message))}"#
    }
}

/// Minimal JSON text helpers for messages built by hand on the hot path.
public enum JSON {
    /// A JSON number for `double`; `null` for NaN and the infinities, which JSON lacks.
    public static func number(_ double: Double) -> String {
        double.isFinite ? double.description : "null"
    }

    /// A JSON string literal for `text`, with quotes and control characters escaped.
    public static func quote(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
