/// The text messages a dashboard sends on `/live` (contract section 4).

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
