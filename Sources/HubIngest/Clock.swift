import Foundation

/// The hub's time: the wall clock in the contract's unit and a monotonic clock for
/// durations, and sleeping on it. Every shell takes one, so tests can drive time with a
/// `ManualClock`; the state machines take times as arguments.
public protocol HubClock: Sendable {
    /// Microseconds since the Unix epoch.
    func wallMicros() -> Int64
    /// Monotonic nanoseconds, for durations and deadlines.
    func uptimeNanos() -> UInt64
    /// Returns after `duration` on this clock, or throws when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// The operating system's clocks.
public struct SystemClock: HubClock {
    public init() {}

    public func wallMicros() -> Int64 { WallClock.nowMicros() }

    public func uptimeNanos() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration)
    }
}

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
