/// Connection ids: 64 random bits as 16 hex digits, unique enough for logs and presence.
enum ConnectionID {
    static func make() -> String { text(random()) }

    /// A connection's number; a connection that keeps it instead of its text saves a heap string.
    static func random() -> UInt64 { UInt64.random(in: .min ... .max) }

    /// The 16 hex digits of a connection's number.
    static func text(_ value: UInt64) -> String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
