import Foundation
import HubProtocol

/// JSON a client sends for the hub to store (command params and results, device labels),
/// checked at the door: PostgreSQL's `jsonb` and `text` cannot hold U+0000, and deep
/// nesting costs stack in every parser that reads it back. A value that passes is stored
/// as given; one that fails is refused with the reason, and nothing else is touched.
enum StorableJSON {
    /// Objects and arrays may nest this deep (the value itself is level 1).
    static let maxDepth = 32

    /// Why `value` (from `JSONSerialization`) cannot be stored, or `nil` if it can.
    static func refusal(_ value: Any) -> String? {
        refusal(value, depth: 1)
    }

    /// Why `value` cannot be stored, or `nil` if it can.
    static func refusal(_ value: JSONValue) -> String? {
        if value.containsNUL { return "text may not contain U+0000" }
        return value.depth > maxDepth ? tooDeep : nil
    }

    /// Why `text` cannot be stored as a `text` column, or `nil` if it can.
    static func refusal(text: String) -> String? {
        text.utf8.contains(0) ? "text may not contain U+0000" : nil
    }

    private static func refusal(_ value: Any, depth: Int) -> String? {
        switch value {
        case let string as String:
            return refusal(text: string)
        case let object as [String: Any]:
            guard depth <= maxDepth else { return tooDeep }
            for (key, member) in object {
                if let why = refusal(text: key) ?? refusal(member, depth: depth + 1) { return why }
            }
            return nil
        case let array as [Any]:
            guard depth <= maxDepth else { return tooDeep }
            for element in array {
                if let why = refusal(element, depth: depth + 1) { return why }
            }
            return nil
        default:
            return nil
        }
    }

    private static let tooDeep = "JSON may nest at most \(maxDepth) levels"
}
