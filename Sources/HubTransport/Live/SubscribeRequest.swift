import Foundation
import HubIngest
import HubProtocol

/// A `/live` message as the hub reads it: JSON text to a checked request, with no I/O, so
/// it can be tested and fuzzed alone (`Sources/HubFuzz`).
public enum LiveClientMessage {
    case ping
    case subscribe(SubscribeRequest)
    case unsubscribe(id: String)
    case command([String: Any])

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
        guard let message = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw LiveRequestError("bad_json", "expected a JSON object")
        }
        switch message["type"] as? String {
        case "ping": self = .ping
        case "subscribe": self = .subscribe(try SubscribeRequest(message, maxPatterns: limits.maxPatterns))
        case "unsubscribe":
            guard let id = message["id"] as? String else { throw LiveRequestError("unknown_subscription", "no subscription with that id") }
            self = .unsubscribe(id: id)
        case "command": self = .command(message)
        case let type?: throw LiveRequestError("unknown_type", "unknown message type \(type)")
        case nil: throw LiveRequestError("bad_message", "a message needs a string \"type\"")
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

    public init(_ message: [String: Any], maxPatterns: Int) throws(LiveRequestError) {
        func refuse(_ why: String) -> LiveRequestError { LiveRequestError("bad_subscription", why) }
        guard let id = message["id"] as? String, !id.isEmpty, id.utf8.count <= 64 else {
            throw refuse("\"id\" must be a string of 1 to 64 bytes")
        }
        guard let selectors = message["devices"] as? [String], !selectors.isEmpty else {
            throw refuse("\"devices\" must be a non-empty list of ids or globs")
        }
        guard selectors.count <= maxPatterns else { throw refuse("\"devices\" may hold at most \(maxPatterns) entries") }
        var patterns: [DevicePattern] = []
        for selector in selectors {
            guard let pattern = DevicePattern(selector) else {
                throw LiveRequestError("bad_glob", "\(JSON.quote(selector)) is not a device id or glob (A-Z a-z 0-9 . _ - and *)")
            }
            if !patterns.contains(pattern) { patterns.append(pattern) }
        }
        var metrics: Set<String>?
        if let list = message["metrics"] {
            guard let names = list as? [String] else { throw refuse("\"metrics\" must be a list of metric names") }
            guard names.count <= maxPatterns else { throw refuse("\"metrics\" may hold at most \(maxPatterns) entries") }
            guard names.allSatisfy(Self.isMetricName) else {
                throw refuse("\"metrics\" must hold metric names: 1 to 64 characters of A-Z a-z 0-9 . _ / : -")
            }
            metrics = Set(names)
        }
        var maxRate: Double?
        if let raw = message["max_rate_hz"] {
            guard let rate = JSONNumber.double(raw), Self.rateRange.contains(rate) else {
                throw refuse("\"max_rate_hz\" must be a number from 0.001 to 1000")
            }
            maxRate = rate
        }
        var since: Int64?
        if let raw = message["since_us"] {
            guard let value = JSONNumber.integer(raw, in: 0...Int64.max) else {
                throw refuse("\"since_us\" must be a non-negative integer of microseconds")
            }
            since = value
        }
        var resume: [String: UInt64] = [:]
        if let raw = message["resume"] {
            guard let object = raw as? [String: Any], object.count <= maxPatterns else {
                throw refuse("\"resume\" must map at most \(maxPatterns) device ids to the last seq seen")
            }
            for (device, seq) in object {
                guard DeviceID.isValid(device), let number = JSONNumber.integer(seq, in: 0...Int64.max) else {
                    throw refuse("\"resume\" must map device ids to the last seq seen (0 to 2^63-1)")
                }
                resume[device] = UInt64(number)
            }
        }
        self.id = id
        self.patterns = patterns
        self.metrics = metrics
        maxRateHz = maxRate
        sinceMicros = since
        self.resume = resume
    }
}
