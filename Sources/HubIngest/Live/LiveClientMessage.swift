import HubProtocol

/// A `/live` message as the hub reads it: JSON text to a checked request, with no I/O, so
/// it can be tested and fuzzed alone (`Sources/HubFuzz`, which links no NIO). The messages are the
/// contract's types (`HubProtocol/Messages`).
public enum LiveClientMessage {
    case ping
    case subscribe(SubscribeRequest)
    case unsubscribe(id: String)
    /// `nil` when it names no device (no string `"device"`).
    case command(LiveCommand?)

    /// What a client's messages may hold (contract section 7).
    public struct Limits: Sendable {
        /// The largest message, in bytes (`--max-json-bytes`).
        public var maxBytes = 16_384
        /// Entries of one subscription's `devices`, and of its `metrics` (`--max-patterns`).
        public var maxPatterns = 100

        public init(maxBytes: Int = 16_384, maxPatterns: Int = 100) {
            self.maxBytes = maxBytes
            self.maxPatterns = maxPatterns
        }
    }

    /// - Throws: `LiveRequestError` with the contract's error code.
    public init(text: String, limits: Limits) throws(LiveRequestError) {
        guard text.utf8.count <= limits.maxBytes else {
            throw LiveRequestError("too_large", "messages may have at most \(limits.maxBytes) bytes")
        }
        guard let envelope = MessageEnvelope.read(text) else { throw LiveRequestError("bad_json", "expected a JSON object") }
        switch envelope.type {
        case Ping.type??: self = .ping
        case Subscribe.type??:
            let subscribe: Subscribe
            do {
                subscribe = try Subscribe.decode(text)
            } catch {
                throw SubscribeRequest.refusal(error, maxPatterns: limits.maxPatterns)
            }
            self = .subscribe(try SubscribeRequest(subscribe, maxPatterns: limits.maxPatterns))
        case Unsubscribe.type??:
            guard let unsubscribe = try? Unsubscribe.decode(text) else {
                throw LiveRequestError("unknown_subscription", "no subscription with that id")
            }
            self = .unsubscribe(id: unsubscribe.id)
        case LiveCommand.type??: self = .command(try? LiveCommand.decode(text))
        case let type??: throw LiveRequestError("unknown_type", "unknown message type \(type)")
        case nil, .some(nil): throw LiveRequestError("bad_message", "a message needs a string \"type\"")
        }
    }
}

/// Whether `name` can be a metric name (contract section 2).
extension SubscribeRequest {
    static func isMetricName(_ name: String) -> Bool {
        (1...FrameLimits.maxNameLength).contains(name.utf8.count) && name.utf8.allSatisfy(FrameLimits.isNameByte)
    }
}

public struct LiveRequestError: Error {
    public let code: String
    public let message: String

    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// A checked `subscribe` (contract section 4).
public struct SubscribeRequest {
    public let id: String
    public let patterns: [DevicePattern]
    /// `nil`: every metric.
    public let metrics: Set<String>?
    public let maxRateHz: Double?
    public let sinceMicros: Int64?
    public let resume: [String: UInt64]

    /// The slowest and fastest `max_rate_hz` (contract section 7).
    public static let rateRange: ClosedRange<Double> = 0.001...1_000

    public init(_ message: Subscribe, maxPatterns: Int) throws(LiveRequestError) {
        func refuse(_ why: String) -> LiveRequestError { LiveRequestError("bad_subscription", why) }
        guard !message.id.isEmpty, message.id.utf8.count <= 64 else { throw refuse(Self.idRule) }
        guard !message.devices.isEmpty else { throw refuse(Self.devicesRule) }
        guard message.devices.count <= maxPatterns else { throw refuse("\"devices\" may hold at most \(maxPatterns) entries") }
        var patterns: [DevicePattern] = []
        for selector in message.devices {
            guard let pattern = DevicePattern(selector) else {
                throw LiveRequestError("bad_glob", "\(JSON.quote(selector)) is not a device id or glob (A-Z a-z 0-9 . _ - and *)")
            }
            if !patterns.contains(pattern) { patterns.append(pattern) }
        }
        if let names = message.metrics {
            guard names.count <= maxPatterns else { throw refuse("\"metrics\" may hold at most \(maxPatterns) entries") }
            guard names.allSatisfy(Self.isMetricName) else {
                throw refuse("\"metrics\" must hold metric names: 1 to 64 characters of A-Z a-z 0-9 . _ / : -")
            }
        }
        if let rate = message.maxRateHz, !Self.rateRange.contains(rate) { throw refuse(Self.rateRule) }
        if let since = message.sinceMicros, since < 0 { throw refuse(Self.sinceRule) }
        let resume = message.resume ?? [:]
        guard resume.count <= maxPatterns else { throw refuse(Self.resumeRule(maxPatterns)) }
        guard resume.keys.allSatisfy(DeviceID.isValid) else { throw refuse(Self.resumeEntryRule) }
        id = message.id
        self.patterns = patterns
        metrics = message.metrics.map(Set.init)
        maxRateHz = message.maxRateHz
        sinceMicros = message.sinceMicros
        self.resume = resume
    }

    /// The refusal of a `subscribe` that does not decode: the rule of the field at fault.
    static func refusal(_ error: Error, maxPatterns: Int) -> LiveRequestError {
        let path: [CodingKey] =
            switch error as? DecodingError {
            case .keyNotFound(let key, let context)?: context.codingPath + [key]
            case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .dataCorrupted(let context)?: context.codingPath
            default: []
            }
        let rule: String =
            switch path.first.flatMap({ Subscribe.CodingKeys(stringValue: $0.stringValue) }) {
            case .id?: idRule
            case .devices?: devicesRule
            case .metrics?: "\"metrics\" must be a list of metric names"
            case .maxRateHz?: rateRule
            case .sinceMicros?: sinceRule
            case .resume?: path.count == 1 ? resumeRule(maxPatterns) : resumeEntryRule
            case nil: "not a subscribe message"
            }
        return LiveRequestError("bad_subscription", rule)
    }

    private static let idRule = "\"id\" must be a string of 1 to 64 bytes"
    private static let devicesRule = "\"devices\" must be a non-empty list of ids or globs"
    private static let rateRule = "\"max_rate_hz\" must be a number from 0.001 to 1000"
    private static let sinceRule = "\"since_us\" must be a non-negative integer of microseconds"
    private static let resumeEntryRule = "\"resume\" must map device ids to the last seq seen (0 to 2^63-1)"
    private static func resumeRule(_ maxPatterns: Int) -> String {
        "\"resume\" must map at most \(maxPatterns) device ids to the last seq seen"
    }
}
