@testable import NATSClient
import Testing

@Suite("NATS client: inbox token")
struct InboxTokenTests {
    @Test("a token is 22 base62 characters")
    func shape() {
        let token = InboxToken.make()
        #expect(token.utf8.count == 22)
        #expect(token.utf8.allSatisfy { InboxToken.alphabet.contains($0) })
    }

    @Test("the same random values give the same token, and the alphabet's ends are reachable")
    func deterministic() {
        var first = SeededRandom(seed: 7)
        var second = SeededRandom(seed: 7)
        #expect(InboxToken.make(using: &first) == InboxToken.make(using: &second))
        var zeros = FixedRandom([1 << 20])
        #expect(InboxToken.make(using: &zeros) == String(repeating: "0", count: 22))
        var highest = FixedRandom([UInt64.max])
        #expect(InboxToken.make(using: &highest) == String(repeating: "z", count: 22))
    }

    @Test("system tokens do not repeat")
    func unique() {
        let tokens = Set((0..<1_000).map { _ in InboxToken.make() })
        #expect(tokens.count == 1_000)
    }
}
