/// A count per second over a sliding window, for figures like "readings/s committed":
/// one bucket per second of the hub's uptime clock, the last `seconds` of them summed. A
/// value type with no clock of its own; memory is one integer per second of the window.
public struct RateWindow: Sendable {
    public let seconds: Int
    private var counts: [Int]
    /// The second each bucket holds.
    private var stamps: [UInt64]

    public init(seconds: Int = 10) {
        precondition(seconds > 0)
        self.seconds = seconds
        counts = Array(repeating: 0, count: seconds)
        stamps = Array(repeating: .max, count: seconds)
    }

    /// Counts `count` at `nanos` (uptime).
    public mutating func add(_ count: Int, atNanos nanos: UInt64) {
        let second = nanos / 1_000_000_000
        let slot = Int(second % UInt64(seconds))
        if stamps[slot] != second {
            (stamps[slot], counts[slot]) = (second, 0)
        }
        counts[slot] &+= count
    }

    /// The mean per second over the last `seconds` seconds up to `nanos`: the current
    /// second so far and the `seconds - 1` before it (fewer just after start).
    public func perSecond(atNanos nanos: UInt64) -> Double {
        let now = nanos / 1_000_000_000
        let first = now >= UInt64(seconds - 1) ? now - UInt64(seconds - 1) : 0
        var total = 0
        for slot in 0..<seconds where stamps[slot] != .max && stamps[slot] >= first && stamps[slot] <= now {
            total &+= counts[slot]
        }
        let covered = Double(now - first) + Double(nanos % 1_000_000_000) / 1e9
        return covered > 0 ? Double(total) / covered : 0
    }
}
