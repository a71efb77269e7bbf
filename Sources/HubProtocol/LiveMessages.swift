/// The JSON messages the hub sends dashboards on `/live` (contract section 4).
public enum LiveMessages {
    public static func hello(connection: String, serverTimeMicros: Int64) -> String {
        #"{"type":"hello","connection":\#(JSON.quote(connection)),"server_time_us":\#(serverTimeMicros)}"#
    }

    public static func subscribed(id: String) -> String {
        #"{"type":"subscribed","id":\#(JSON.quote(id))}"#
    }

    public static let pong = #"{"type":"pong"}"#

    public static func lagged(sub: String, dropped: Int) -> String {
        #"{"type":"lagged","sub":\#(JSON.quote(sub)),"dropped":\#(dropped)}"#
    }

    public static func presence(
        device: String, online: Bool, session: Int64, connection: String, remote: String, atMicros: Int64
    ) -> String {
        #"{"type":"presence","device":\#(JSON.quote(device)),"online":\#(online),"session":\#(session),"#
            + #""connection":\#(JSON.quote(connection)),"remote":\#(JSON.quote(remote)),"at_us":\#(atMicros)}"#
    }

    /// A telemetry event is `telemetryPrefix(sub) + body`: the body is built once per frame
    /// and metric filter, and shared by every subscription with that filter.
    public static func telemetryPrefix(sub: String) -> String {
        #"{"type":"telemetry","sub":\#(JSON.quote(sub)),"#
    }

    /// `"device":…,"seq":…,"readings":[…]}` for the readings that pass `metrics` (all if
    /// `nil`); `nil` when none pass.
    public static func telemetryBody(device: String, frame: TelemetryFrame, baseMicros: Int64, metrics: Set<String>?) -> String? {
        telemetryBody(
            device: device, seq: frame.seq,
            readings: frame.readings.lazy.filter { metrics?.contains($0.name) ?? true }.map {
                (metric: $0.name, tsMicros: baseMicros + Int64($0.offsetMicros), value: $0.value)
            })
    }

    /// The same body from readings given one by one (stored or conflated ones).
    public static func telemetryBody<Readings: Sequence>(device: String, seq: UInt64, readings: Readings) -> String?
    where Readings.Element == (metric: String, tsMicros: Int64, value: Value) {
        var list = ""
        for reading in readings {
            if !list.isEmpty { list += "," }
            list += #"{"metric":\#(JSON.quote(reading.metric)),"ts_us":\#(reading.tsMicros),"value":\#(json(reading.value))}"#
        }
        guard !list.isEmpty else { return nil }
        return #""device":\#(JSON.quote(device)),"seq":\#(seq),"readings":[\#(list)]}"#
    }

    public static func replayDone(sub: String) -> String {
        #"{"type":"replay_done","sub":\#(JSON.quote(sub))}"#
    }

    /// A value as JSON: a number, a boolean or a string.
    public static func json(_ value: Value) -> String {
        switch value {
        case .f64(let double): JSON.number(double)
        case .i64(let int): "\(int)"
        case .bool(let bool): bool ? "true" : "false"
        case .string(let string): JSON.quote(string)
        }
    }
}

extension LiveMessages {
    /// `{"type":"error",…}`: the same shape devices get.
    public static func error(code: String, message: String) -> String {
        DeviceMessages.error(code: code, message: message)
    }
}
