/// A device selector in a subscription: an exact id, or a glob where `*` matches any run
/// of characters (`sensor-*`, `*-kitchen`, `*`).
public enum DevicePattern: Hashable, Sendable {
    case exact(String)
    case glob(String)

    public static let maxLength = 128

    /// Parses a selector. - Returns: `nil` if it holds characters no device id can have.
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= Self.maxLength else { return nil }
        let allowed = text.utf8.allSatisfy { byte in
            byte == UInt8(ascii: "*") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        guard allowed else { return nil }
        self = text.contains("*") ? .glob(text) : .exact(text)
    }

    /// The selector as written.
    public var text: String {
        switch self {
        case .exact(let text), .glob(let text): text
        }
    }

    public func matches(_ id: String) -> Bool {
        switch self {
        case .exact(let exact): return exact == id
        case .glob(let pattern): return Self.glob(Array(pattern.utf8)[...], matches: Array(id.utf8)[...])
        }
    }

    /// Iterative wildcard match with single backtrack point: linear in practice.
    private static func glob(_ pattern: ArraySlice<UInt8>, matches text: ArraySlice<UInt8>) -> Bool {
        var p = pattern.startIndex, t = text.startIndex
        var star: Int?, mark = t
        while t < text.endIndex {
            if p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") {
                star = p
                mark = t
                p += 1
            } else if p < pattern.endIndex, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if let star {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.endIndex
    }
}
