/// The random part of a connection's reply inbox, `_INBOX.<token>.*`.
///
/// 22 base62 characters carry about 131 bits, so two connections on one server never share
/// an inbox by chance. Each character is drawn without modulo bias.
enum InboxToken {
    static let length = 22
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    static func make(using random: inout some RandomNumberGenerator) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        for _ in 0..<length {
            bytes.append(alphabet[Int(random.next(upperBound: UInt64(alphabet.count)))])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A token from the system's cryptographic generator.
    static func make() -> String {
        var random = SystemRandomNumberGenerator()
        return make(using: &random)
    }
}
