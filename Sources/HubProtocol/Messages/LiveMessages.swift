/// The text messages between a dashboard and the hub on `/live` (contract section 4).

// MARK: - From the hub

/// The first message on `/live`.
public struct Hello: HubMessage {
    public static let type = "hello"
    public var connection: String
    public var serverTimeMicros: Int64

    public init(connection: String, serverTimeMicros: Int64) {
        self.connection = connection
        self.serverTimeMicros = serverTimeMicros
    }

    private enum CodingKeys: String, CodingKey {
        case connection
        case serverTimeMicros = "server_time_us"
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"hello","connection":"#)
        writer.string(connection)
        writer.raw(#","server_time_us":"#)
        writer.integer(serverTimeMicros)
        writer.raw("}")
    }
}

/// A subscription is active; a replay, if asked for, follows.
public struct Subscribed: HubMessage {
    public static let type = "subscribed"
    public var id: String

    public init(id: String) {
        self.id = id
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"subscribed","id":"#)
        writer.string(id)
        writer.raw("}")
    }
}

/// The answer to `ping`.
public struct Pong: HubMessage {
    public static let type = "pong"

    public init() {}

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"pong"}"#)
    }
}

/// This dashboard was too slow: `dropped` events were conflated away.
public struct Lagged: HubMessage {
    public static let type = "lagged"
    public var sub: String
    public var dropped: Int

    public init(sub: String, dropped: Int) {
        self.sub = sub
        self.dropped = dropped
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"lagged","sub":"#)
        writer.string(sub)
        writer.raw(#","dropped":"#)
        writer.integer(dropped)
        writer.raw("}")
    }
}

/// A matching device connected or disconnected.
public struct Presence: HubMessage {
    public static let type = "presence"
    public var device: String
    public var online: Bool
    public var session: Int64
    public var connection: String
    public var remote: String
    public var atMicros: Int64

    public init(device: String, online: Bool, session: Int64, connection: String, remote: String, atMicros: Int64) {
        self.device = device
        self.online = online
        self.session = session
        self.connection = connection
        self.remote = remote
        self.atMicros = atMicros
    }

    private enum CodingKeys: String, CodingKey {
        case device, online, session, connection, remote
        case atMicros = "at_us"
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"presence","device":"#)
        writer.string(device)
        writer.raw(#","online":"#)
        writer.bool(online)
        writer.raw(#","session":"#)
        writer.integer(session)
        writer.raw(#","connection":"#)
        writer.string(connection)
        writer.raw(#","remote":"#)
        writer.string(remote)
        writer.raw(#","at_us":"#)
        writer.integer(atMicros)
        writer.raw("}")
    }
}

/// A history replay finished; live events follow.
public struct ReplayDone: HubMessage {
    public static let type = "replay_done"
    public var sub: String

    public init(sub: String) {
        self.sub = sub
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"replay_done","sub":"#)
        writer.string(sub)
        writer.raw("}")
    }
}

/// A command changed state. `result` is the stored JSON; absent fields are left out.
public struct CommandStatusMessage: HubMessage {
    public static let type = "command_status"
    public var id: String
    public var device: String
    public var status: String
    public var ref: String?
    public var result: RawJSON?
    public var error: String?

    public init(id: String, device: String, status: String, ref: String? = nil, result: RawJSON? = nil, error: String? = nil) {
        self.id = id
        self.device = device
        self.status = status
        self.ref = ref
        self.result = result
        self.error = error
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"command_status","id":"#)
        writer.string(id)
        writer.raw(#","device":"#)
        writer.string(device)
        writer.raw(#","status":"#)
        writer.string(status)
        if let ref {
            writer.raw(#","ref":"#)
            writer.string(ref)
        }
        if let result {
            writer.raw(#","result":"#)
            writer.raw(result.text)
        }
        if let error {
            writer.raw(#","error":"#)
            writer.string(error)
        }
        writer.raw("}")
    }
}

/// One frame's readings that pass a subscription's filter. The hub writes these on its
/// hot path with `TelemetryJSON` (a body shared by every subscription with one filter);
/// this type reads them.
public struct LiveTelemetry: HubMessage {
    public struct Reading: Codable, Equatable, Sendable {
        public var metric: String
        public var tsMicros: Int64
        /// A number, a boolean or a string.
        public var value: JSONValue

        public init(metric: String, tsMicros: Int64, value: JSONValue) {
            self.metric = metric
            self.tsMicros = tsMicros
            self.value = value
        }

        private enum CodingKeys: String, CodingKey {
            case metric, value
            case tsMicros = "ts_us"
        }
    }

    public static let type = "telemetry"
    public var sub: String
    public var device: String
    public var seq: UInt64
    public var readings: [Reading]

    public init(sub: String, device: String, seq: UInt64, readings: [Reading]) {
        self.sub = sub
        self.device = device
        self.seq = seq
        self.readings = readings
    }

    public func write(to writer: inout JSONWriter) {
        TelemetryJSON.prefix(sub: sub, to: &writer)
        TelemetryJSON.body(device: device, seq: seq, readings: readings.lazy.map { ($0.metric, $0.tsMicros, $0.value) }, to: &writer)
    }
}

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

// MARK: - From a dashboard

/// `{"type":"ping"}`.
public struct Ping: HubMessage {
    public static let type = "ping"

    public init() {}

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"ping"}"#)
    }
}

/// Stop a subscription.
public struct Unsubscribe: HubMessage {
    public static let type = "unsubscribe"
    public var id: String

    public init(id: String) {
        self.id = id
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"unsubscribe","id":"#)
        writer.string(id)
        writer.raw("}")
    }
}

/// Start a subscription, with an optional replay. Read strictly: a field given with the
/// wrong type (or as `null`) fails with that field's key in the error's `codingPath`, and
/// whole numbers may be written as `1.0` but not as `1.5`. The hub checks the values
/// (lengths, globs, ranges) itself.
public struct Subscribe: HubMessage {
    public static let type = "subscribe"
    public var id: String
    /// Device ids or globs with `*`.
    public var devices: [String]
    /// `nil`: every metric.
    public var metrics: [String]?
    public var maxRateHz: Double?
    public var sinceMicros: Int64?
    /// The last seq seen, per device (0 to 2^63-1).
    public var resume: [String: UInt64]?

    public init(
        id: String, devices: [String], metrics: [String]? = nil, maxRateHz: Double? = nil, sinceMicros: Int64? = nil,
        resume: [String: UInt64]? = nil
    ) {
        self.id = id
        self.devices = devices
        self.metrics = metrics
        self.maxRateHz = maxRateHz
        self.sinceMicros = sinceMicros
        self.resume = resume
    }

    public enum CodingKeys: String, CodingKey {
        case id, devices, metrics, resume
        case maxRateHz = "max_rate_hz"
        case sinceMicros = "since_us"
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        devices = try container.decode([String].self, forKey: .devices)
        metrics = container.contains(.metrics) ? try container.decode([String].self, forKey: .metrics) : nil
        maxRateHz = try container.present(.maxRateHz).map { value in
            guard let number = value.number else { throw Self.refused(.maxRateHz, container) }
            return number
        }
        sinceMicros = try container.present(.sinceMicros).map { value in
            guard let integer = value.exactInteger(in: Int64.min...Int64.max) else { throw Self.refused(.sinceMicros, container) }
            return integer
        }
        resume = try container.present(.resume).map { value in
            guard case .object(let object) = value else { throw Self.refused(.resume, container) }
            var seqs: [String: UInt64] = [:]
            for (device, seq) in object {
                guard let seq = seq.exactInteger(in: 0...Int64.max) else {
                    throw DecodingError.dataCorrupted(
                        .init(codingPath: [CodingKeys.resume, NamedKey(device)], debugDescription: "a seq is 0 to 2^63-1"))
                }
                seqs[device] = UInt64(seq)
            }
            return seqs
        }
    }

    private static func refused(_ key: CodingKeys, _ container: KeyedDecodingContainer<CodingKeys>) -> DecodingError {
        .dataCorruptedError(forKey: key, in: container, debugDescription: "not a number of the right kind")
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"subscribe","id":"#)
        writer.string(id)
        writer.raw(#","devices":"#)
        writer.strings(devices)
        if let metrics {
            writer.raw(#","metrics":"#)
            writer.strings(metrics)
        }
        if let maxRateHz {
            writer.raw(#","max_rate_hz":"#)
            writer.number(maxRateHz)
        }
        if let sinceMicros {
            writer.raw(#","since_us":"#)
            writer.integer(sinceMicros)
        }
        if let resume {
            writer.raw(#","resume":"#)
            writer.value(.object(resume.mapValues { .unsigned($0) }))
        }
        writer.raw("}")
    }
}

/// Send a command from `/live`; answered with `command_status` carrying `ref`. Read
/// leniently where the contract is silent: a `ref` that is not a string is ignored.
/// `params` and `ttl_s` are kept as given for the hub to check, as a REST body's are.
public struct LiveCommand: HubMessage {
    public static let type = "command"
    public var ref: String?
    public var device: String
    public var name: JSONValue?
    public var params: JSONValue?
    public var ttlSeconds: JSONValue?

    public init(device: String, name: String, params: JSONValue? = nil, ttlSeconds: Int? = nil, ref: String? = nil) {
        self.device = device
        self.name = .string(name)
        self.params = params
        self.ttlSeconds = ttlSeconds.map { .integer(Int64($0)) }
        self.ref = ref
    }

    public enum CodingKeys: String, CodingKey {
        case ref, device, name, params
        case ttlSeconds = "ttl_s"
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        ref = try? container.decode(String.self, forKey: .ref)
        device = try container.decode(String.self, forKey: .device)
        name = try container.present(.name)
        params = try container.present(.params)
        ttlSeconds = try container.present(.ttlSeconds)
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"command","#)
        if let ref {
            writer.raw(#""ref":"#)
            writer.string(ref)
            writer.raw(",")
        }
        writer.raw(#""device":"#)
        writer.string(device)
        if let name {
            writer.raw(#","name":"#)
            writer.value(name)
        }
        if let params {
            writer.raw(#","params":"#)
            writer.value(params)
        }
        if let ttlSeconds {
            writer.raw(#","ttl_s":"#)
            writer.value(ttlSeconds)
        }
        writer.raw("}")
    }
}

extension JSONWriter {
    /// A list of strings.
    public mutating func strings(_ list: [String]) {
        raw("[")
        for (index, item) in list.enumerated() {
            if index > 0 { raw(",") }
            string(item)
        }
        raw("]")
    }

    /// Drops what was written after `count` bytes.
    mutating func truncate(to count: Int) {
        bytes.removeSubrange(count...)
    }
}

extension JSONValue {
    /// A JSON number (not a boolean) as a finite `Double`.
    public var number: Double? {
        switch self {
        case .integer(let integer): Double(integer)
        case .unsigned(let unsigned): Double(unsigned)
        case .double(let double): double.isFinite ? double : nil
        default: nil
        }
    }

    /// A whole JSON number within `range` (`1.0` is one, `1.5` and `true` are not).
    public func exactInteger(in range: ClosedRange<Int64>) -> Int64? {
        let exact: Int64? =
            switch self {
            case .integer(let integer): integer
            case .double(let double): Int64(exactly: double)
            default: nil  // beyond 64 bits: outside any range asked for
            }
        guard let exact, range.contains(exact) else { return nil }
        return exact
    }
}
