import Foundation

/// Wall-clock time in the contract's unit. Time-based logic takes times as arguments, so
/// tests drive it; only the shells read this clock.
public enum WallClock {
    /// Microseconds since the Unix epoch.
    public static func nowMicros() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1_000
    }
}
