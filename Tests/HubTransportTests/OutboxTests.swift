import HubProtocol
import Testing

@testable import HubTransport

@Suite("Slow-dashboard outbox and rate limiter")
struct OutboxTests {
    let limit: UInt64 = 60_000_000_000

    func reading(_ seq: UInt64, _ metric: String) -> ConflatedReading {
        ConflatedReading(seq: seq, metric: metric, tsMicros: Int64(seq), value: .i64(Int64(seq)))
    }

    @Test("a writable, idle socket gets events straight through")
    func passThrough() {
        var outbox = Outbox()
        #expect(outbox.offer(control: "x", writable: true, nowNanos: 0, maxBytes: 10, stallLimitNanos: limit) == .write)
        #expect(outbox.offer(telemetry: { "t" }, sub: "s", device: "d", readings: { [] }, writable: true, nowNanos: 0, maxBytes: 10, stallLimitNanos: limit) == .write)
    }

    @Test("over its bound the outbox conflates to the newest reading per device and metric, then reports lagged")
    func conflation() {
        var outbox = Outbox()
        let text = String(repeating: "x", count: 8)
        // Not writable: the first event queues, the rest go over the 10-byte bound.
        for seq in 1...5 as ClosedRange<UInt64> {
            _ = outbox.offer(
                telemetry: { text }, sub: "s", device: "d", readings: { [reading(seq, "temp"), reading(seq, "rpm")] },
                writable: false, nowNanos: 0, maxBytes: 10, stallLimitNanos: limit)
        }
        var written: [String] = []
        let dropped = outbox.drain(isSubscribed: { _ in true }, write: { written.append($0); return true })
        #expect(written.count == 3)
        #expect(written[0] == text)
        #expect(written[1].contains(#""seq":5"#))
        #expect(written[1].contains(#""metric":"rpm""#) && written[1].contains(#""metric":"temp""#))
        #expect(written[2] == Lagged(sub: "s", dropped: 6).json)
        #expect(dropped == 6)
        #expect(outbox.isIdle)
    }

    @Test("a dashboard stalled past the limit is to be closed")
    func stallLimit() {
        var outbox = Outbox()
        #expect(outbox.offer(control: "a", writable: false, nowNanos: 0, maxBytes: 100, stallLimitNanos: 10) == .held)
        #expect(outbox.offer(control: "b", writable: false, nowNanos: 5, maxBytes: 100, stallLimitNanos: 10) == .held)
        #expect(outbox.offer(control: "c", writable: false, nowNanos: 11, maxBytes: 100, stallLimitNanos: 10) == .closeSlowConsumer)
    }

    @Test("the rate limiter sends whole frames when due, holds the newest otherwise, and releases it later")
    func rateLimiter() {
        var rate = RateLimiter()
        let first = rate.offer(sub: "s", device: "d", readings: [reading(1, "t")], intervalNanos: 100, nowNanos: 0)
        #expect(first?.map(\.seq) == [1])
        #expect(rate.offer(sub: "s", device: "d", readings: [reading(2, "t")], intervalNanos: 100, nowNanos: 10) == nil)
        #expect(rate.offer(sub: "s", device: "d", readings: [reading(3, "t")], intervalNanos: 100, nowNanos: 20) == nil)
        #expect(rate.nextDue == 100)
        #expect(rate.takeDue(nowNanos: 50).isEmpty)
        let due = rate.takeDue(nowNanos: 100)
        #expect(due.values.map(\.seq) == [3])
        #expect(rate.nextDue == nil)
    }
}
