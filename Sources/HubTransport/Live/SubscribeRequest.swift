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

    /// - Throws: `LiveRequestError` with the contract's error code.
    public init(text: String, maxBytes: Int) throws(LiveRequestError) {
        guard text.utf8.count <= maxBytes else { throw LiveRequestError("too_large", "messages may have at most \(maxBytes) bytes") }
        guard let message = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw LiveRequestError("bad_json", "expected a JSON object")
        }
        switch message["type"] as? String {
        case "ping": self = .ping
        case "subscribe": self = .subscribe(try SubscribeRequest(message))
        case "unsubscribe":
            guard let id = message["id"] as? String else { throw LiveRequestError("unknown_subscription", "no subscription with that id") }
            self = .unsubscribe(id: id)
        case "command": self = .command(message)
        case let type?: throw LiveRequestError("unknown_type", "unknown message type \(type)")
        case nil: throw LiveRequestError("bad_message", "a message needs a string \"type\"")
        }
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

    public init(_ message: [String: Any]) throws(LiveRequestError) {
        guard let id = message["id"] as? String, !id.isEmpty, id.utf8.count <= 64 else {
            throw LiveRequestError("bad_subscription", "\"id\" must be a string of 1 to 64 bytes")
        }
        guard let selectors = message["devices"] as? [String], !selectors.isEmpty else {
            throw LiveRequestError("bad_subscription", "\"devices\" must be a non-empty list of ids or globs")
        }
        var patterns: [DevicePattern] = []
        for selector in selectors {
            guard let pattern = DevicePattern(selector) else {
                throw LiveRequestError("bad_glob", "\(JSON.quote(selector)) is not a device id or glob (A-Z a-z 0-9 . _ - and *)")
            }
            patterns.append(pattern)
        }
        var metrics: Set<String>?
        if let list = message["metrics"] {
            guard let names = list as? [String] else {
                throw LiveRequestError("bad_subscription", "\"metrics\" must be a list of metric names")
            }
            metrics = Set(names)
        }
        var maxRate: Double?
        if let raw = message["max_rate_hz"] {
            guard let rate = (raw as? NSNumber)?.doubleValue, rate > 0, rate <= 1_000 else {
                throw LiveRequestError("bad_subscription", "\"max_rate_hz\" must be a number above 0 and at most 1000")
            }
            maxRate = rate
        }
        var since: Int64?
        if let raw = message["since_us"] {
            guard let value = raw as? NSNumber, value.int64Value >= 0 else {
                throw LiveRequestError("bad_subscription", "\"since_us\" must be a non-negative integer of microseconds")
            }
            since = value.int64Value
        }
        var resume: [String: UInt64] = [:]
        if let raw = message["resume"] {
            guard let object = raw as? [String: Any] else {
                throw LiveRequestError("bad_subscription", "\"resume\" must map device ids to the last seq seen")
            }
            for (device, seq) in object {
                guard DeviceID.isValid(device), let number = seq as? NSNumber, number.int64Value >= 0 else {
                    throw LiveRequestError("bad_subscription", "\"resume\" must map device ids to the last seq seen")
                }
                resume[device] = number.uint64Value
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
