/// Connection ids: 64 random bits as 16 hex digits, unique enough for logs and presence.
enum ConnectionID {
    static func make() -> String {
        let value = UInt64.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
