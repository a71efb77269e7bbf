#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A JSON text message of the contract (sections 1, 2 and 4), as a `Codable` value shared
/// by the hub, the clients and the fuzzers. The hub writes each one with `JSONWriter`
/// (`write(to:)`, the fields in the contract's order; `Encodable` gives the same value);
/// anyone may read one with `decode(_:)`, which ignores `type` (read it first with
/// `MessageEnvelope`). Reading a message the hub wrote gives back the value it wrote
/// (`MessageTests`).
public protocol HubMessage: Codable, Equatable, Sendable {
    /// The message's `type`.
    static var type: String { get }
    func write(to writer: inout JSONWriter)
}

extension HubMessage {
    /// The message as JSON text.
    public var json: String {
        var writer = JSONWriter(capacity: 96)
        write(to: &writer)
        return writer.text
    }

    /// Encodes what `write(to:)` writes.
    public func encode(to encoder: Encoder) throws {
        try (JSONValue.parse(json) ?? .null).encode(to: encoder)
    }

    /// Reads a message of this type from JSON text.
    /// - Throws: `DecodingError`, whose `codingPath` names the field at fault.
    public static func decode(_ text: String) throws -> Self {
        try decode(Data(text.utf8))
    }

    /// Reads a message of this type from JSON bytes.
    public static func decode(_ data: Data) throws -> Self {
        try messageDecoder.decode(Self.self, from: data)
    }
}

/// One decoder for every message (decoding does not change it).
let messageDecoder = JSONDecoder()

/// Any message's `type`, read alone.
public struct MessageEnvelope: Decodable, Sendable {
    /// `nil` when absent; a `type` that is not a string is `.some(nil)`.
    public let type: String??

    private enum CodingKeys: String, CodingKey { case type }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard container.contains(.type) else {
            type = nil
            return
        }
        type = .some(try? container.decode(String.self, forKey: .type))
    }

    /// The envelope of `text`; `nil` when it is not a JSON object.
    public static func read(_ text: String) -> MessageEnvelope? {
        try? messageDecoder.decode(MessageEnvelope.self, from: Data(text.utf8))
    }
}

extension JSONValue {
    /// Reads JSON text (any value, also a scalar); `nil` when it is not JSON.
    public static func parse(_ text: String) -> JSONValue? {
        try? messageDecoder.decode(JSONValue.self, from: Data(text.utf8))
    }
}

/// A key named at run time (a device id in `resume`).
struct NamedKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Decoding helpers for messages written by hand.
extension KeyedDecodingContainer {
    /// The value of `key`: `nil` when absent, `.null` when given as `null`.
    func present(_ key: Key) throws -> JSONValue? {
        contains(key) ? try decode(JSONValue.self, forKey: key) : nil
    }
}

/// `{"type":"error","code":…,"message":…}`: a refused request; devices and dashboards get the same shape.
public struct ErrorMessage: HubMessage {
    public static let type = "error"
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"error","code":"#)
        writer.string(code)
        writer.raw(#","message":"#)
        writer.string(message)
        writer.raw("}")
    }
}
