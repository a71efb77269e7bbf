/// Any JSON value: the free-form parts of messages (command params, results and errors).
/// Integers stay exact: a whole number that fits 64 bits is an integer, others a double.
/// `Decodable` has no way to ask which kind comes next, so reading one tries each kind in
/// turn (each miss a thrown error, about 1 µs); hot paths read free-form values another way.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    /// An integer above `Int64.max`.
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let bool = try? container.decode(Bool.self) {
            self = .bool(bool)
        } else if let integer = try? container.decode(Int64.self) {
            self = .integer(integer)
        } else if let unsigned = try? container.decode(UInt64.self) {
            self = .unsigned(unsigned)
        } else if let double = try? container.decode(Double.self) {
            self = .double(double)
        } else if let string = try? container.decode(String.self) {
            self = .string(string)
        } else if let array = try? container.decode([JSONValue].self) {
            self = .array(array)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let bool): try container.encode(bool)
        case .integer(let integer): try container.encode(integer)
        case .unsigned(let unsigned): try container.encode(unsigned)
        case .double(let double): try container.encode(double)
        case .string(let string): try container.encode(string)
        case .array(let array): try container.encode(array)
        case .object(let object): try container.encode(object)
        }
    }

    /// An object's member.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }

    /// The value as JSON text, objects with their keys sorted.
    public var json: String {
        var writer = JSONWriter()
        writer.value(self)
        return writer.text
    }

    /// How deep objects and arrays nest (a scalar is 0, `[]` is 1).
    public var depth: Int {
        switch self {
        case .array(let array): 1 + (array.map(\.depth).max() ?? 0)
        case .object(let object): 1 + (object.values.map(\.depth).max() ?? 0)
        default: 0
        }
    }

    /// Whether a string in the value, or a key, holds U+0000.
    public var containsNUL: Bool {
        switch self {
        case .string(let string): string.utf8.contains(0)
        case .array(let array): array.contains(where: \.containsNUL)
        case .object(let object): object.contains { $0.key.utf8.contains(0) || $0.value.containsNUL }
        default: false
        }
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

extension JSONWriter {
    /// Writes `value`, objects with their keys sorted.
    public mutating func value(_ value: JSONValue) {
        switch value {
        case .null: null()
        case .bool(let bool): self.bool(bool)
        case .integer(let integer): self.integer(integer)
        case .unsigned(let unsigned): self.unsigned(unsigned)
        case .double(let double): number(double)
        case .string(let string): self.string(string)
        case .array(let array):
            raw("[")
            for (index, element) in array.enumerated() {
                if index > 0 { raw(",") }
                self.value(element)
            }
            raw("]")
        case .object(let object):
            raw("{")
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { raw(",") }
                string(key)
                raw(":")
                self.value(object[key]!)
            }
            raw("}")
        }
    }
}

/// A JSON value kept as its text: what the hub stores and forwards as given (command
/// params and results). Decoding reads any value and keeps it as text (keys sorted).
public struct RawJSON: Codable, Equatable, Sendable {
    public var text: String

    public init(_ text: String) {
        self.text = text
    }

    public init(from decoder: Decoder) throws {
        text = try JSONValue(from: decoder).json
    }

    public func encode(to encoder: Encoder) throws {
        try value.encode(to: encoder)
    }

    /// The text, read as a value (`null` if it is not JSON).
    public var value: JSONValue {
        JSONValue.parse(text) ?? .null
    }
}
