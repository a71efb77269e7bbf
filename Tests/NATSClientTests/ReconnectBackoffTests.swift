@testable import NATSClient
import Testing

@Suite("NATS client: reconnect backoff")
struct ReconnectBackoffTests {
    let backoff = ReconnectBackoff(minNanos: 50_000_000, maxNanos: 2_000_000_000)

    @Test("the ceiling starts at the minimum, doubles per failed attempt and stops at the maximum")
    func ceilingDoubles() {
        #expect(backoff.ceiling(attempt: 0) == 50_000_000)
        #expect(backoff.ceiling(attempt: 1) == 100_000_000)
        #expect(backoff.ceiling(attempt: 5) == 1_600_000_000)
        #expect(backoff.ceiling(attempt: 6) == 2_000_000_000)
        #expect(backoff.ceiling(attempt: 1_000) == 2_000_000_000)
    }

    @Test("a huge attempt count does not overflow")
    func noOverflow() {
        let wide = ReconnectBackoff(minNanos: UInt64.max / 3, maxNanos: UInt64.max)
        #expect(wide.ceiling(attempt: 2) == UInt64.max)
        #expect(wide.ceiling(attempt: 64) == UInt64.max)
        #expect(wide.ceiling(attempt: Int.max) == UInt64.max)
    }

    @Test("a minimum above the maximum is used as the cap")
    func minimumAboveMaximum() {
        let odd = ReconnectBackoff(minNanos: 500, maxNanos: 100)
        #expect(odd.ceiling(attempt: 0) == 500)
        #expect(odd.ceiling(attempt: 3) == 500)
    }

    @Test("full jitter: the delay spans zero to the ceiling as the random value does")
    func fullJitter() {
        var lowest = FixedRandom([1 << 20])
        #expect(backoff.delay(attempt: 3, using: &lowest) == 0)
        var highest = FixedRandom([UInt64.max])
        #expect(backoff.delay(attempt: 3, using: &highest) == 400_000_000)
    }

    @Test("delays drawn over many attempts stay within their ceilings and are spread out")
    func delaysStayWithinCeilings() {
        var random = SeededRandom(seed: 16)
        var delays: Set<UInt64> = []
        for attempt in 0..<200 {
            let delay = backoff.delay(attempt: attempt % 10, using: &random)
            #expect(delay <= backoff.ceiling(attempt: attempt % 10))
            delays.insert(delay)
        }
        #expect(delays.count > 190)
    }
}
