import HubIngest
import Testing

@Suite("Rate window: counts per second over the last seconds")
struct RateWindowTests {
    let second: UInt64 = 1_000_000_000

    @Test("counts of the current second count at once, over the time covered so far")
    func currentSecondCounts() {
        var window = RateWindow(seconds: 10)
        window.add(150, atNanos: 3 * second + second / 2)
        // 3.5 s after start: 150 over 3.5 s.
        #expect(abs(window.perSecond(atNanos: 3 * second + second / 2) - 150 / 3.5) < 1e-9)
        // Long after start: the window covers 9 full seconds and the current one so far.
        window.add(100, atNanos: 100 * second)
        #expect(abs(window.perSecond(atNanos: 100 * second + second / 4) - 100 / 9.25) < 1e-9)
    }

    @Test("counts older than the window drop out, and a reused slot starts afresh")
    func oldCountsDropOut() {
        var window = RateWindow(seconds: 10)
        window.add(1_000, atNanos: 50 * second)
        #expect(window.perSecond(atNanos: 59 * second) > 0)
        #expect(window.perSecond(atNanos: 60 * second) == 0)
        // Second 60 takes the slot of second 50.
        window.add(5, atNanos: 60 * second + 1)
        #expect(abs(window.perSecond(atNanos: 61 * second) - 5 / 9.0) < 1e-9)  // 9 s covered at a second's start
    }

    @Test("several adds in one second sum; nothing added is 0, also at start")
    func sums() {
        var window = RateWindow(seconds: 4)
        #expect(window.perSecond(atNanos: 0) == 0)
        for n in 0..<10 { window.add(2, atNanos: 20 * second + UInt64(n) * 1_000) }
        #expect(abs(window.perSecond(atNanos: 21 * second) - 20 / 3.0) < 1e-9)
    }
}
