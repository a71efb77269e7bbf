/// The hot-path writer of telemetry events: `prefix(sub:) + body(…)`, the body built once
/// per frame and metric filter and shared by every subscription with that filter.
public enum TelemetryJSON {
    /// `{"type":"telemetry","sub":…,`
    public static func prefix(sub: String) -> String {
        var writer = JSONWriter(capacity: 48)
        prefix(sub: sub, to: &writer)
        return writer.text
    }

    static func prefix(sub: String, to writer: inout JSONWriter) {
        writer.raw(#"{"type":"telemetry","sub":"#)
        writer.string(sub)
        writer.raw(",")
    }

    /// `"device":…,"seq":…,"readings":[…]}` for the readings that pass `metrics` (all if
    /// `nil`); `nil` when none pass.
    public static func body(device: String, frame: TelemetryFrame, baseMicros: Int64, metrics: Set<String>?) -> String? {
        body(
            device: device, seq: frame.seq,
            readings: frame.readings.lazy.filter { metrics?.contains($0.name) ?? true }.map {
                (metric: $0.name, tsMicros: baseMicros + Int64($0.offsetMicros), value: $0.value)
            })
    }

    /// The same body from readings given one by one (stored or conflated ones).
    public static func body<Readings: Sequence>(device: String, seq: UInt64, readings: Readings) -> String?
    where Readings.Element == (metric: String, tsMicros: Int64, value: Value) {
        var writer = JSONWriter(capacity: 128)
        guard body(device: device, seq: seq, readings: readings.lazy.map { ($0.metric, $0.tsMicros, $0.value) }, to: &writer)
        else { return nil }
        return writer.text
    }

    /// Writes the body. - Returns: false (and writes nothing) when `readings` is empty.
    @discardableResult
    static func body<Readings: Sequence, V: TelemetryValue>(device: String, seq: UInt64, readings: Readings, to writer: inout JSONWriter) -> Bool
    where Readings.Element == (String, Int64, V) {
        let start = writer.bytes.count
        writer.raw(#""device":"#)
        writer.string(device)
        writer.raw(#","seq":"#)
        writer.unsigned(seq)
        writer.raw(#","readings":["#)
        var any = false
        for (metric, tsMicros, value) in readings {
            writer.raw(any ? #",{"metric":"# : #"{"metric":"#)
            any = true
            writer.string(metric)
            writer.raw(#","ts_us":"#)
            writer.integer(tsMicros)
            writer.raw(#","value":"#)
            value.write(to: &writer)
            writer.raw("}")
        }
        writer.raw("]}")
        if !any { writer.truncate(to: start) }
        return any
    }
}

/// What a telemetry reading's value may be on the wire.
protocol TelemetryValue {
    func write(to writer: inout JSONWriter)
}

extension Value: TelemetryValue {
    /// A number, a boolean or a string.
    func write(to writer: inout JSONWriter) {
        switch self {
        case .f64(let double): writer.number(double)
        case .i64(let int): writer.integer(int)
        case .bool(let bool): writer.bool(bool)
        case .string(let string): writer.string(string)
        }
    }
}

extension JSONValue: TelemetryValue {
    func write(to writer: inout JSONWriter) {
        writer.value(self)
    }
}
