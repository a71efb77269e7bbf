import Crypto
import Foundation

/// Device tokens: 256 random bits, URL-safe, stored only as a SHA-256 hash.
public enum DeviceToken {
    /// A new token: 32 random bytes as unpadded base64url (43 characters).
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func hash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)))
    }

    /// Compares a presented token with a stored hash in constant time.
    public static func matches(_ token: String, hash stored: [UInt8]) -> Bool {
        let presented = hash(token)
        guard presented.count == stored.count else { return false }
        var difference: UInt8 = 0
        for index in presented.indices { difference |= presented[index] ^ stored[index] }
        return difference == 0
    }
}
