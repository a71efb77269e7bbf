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
    /// Blocks a service thread that holds `condition`'s lock until the condition is
    /// signalled or this clock's uptime reaches `deadline` (nanoseconds), as
    /// `NSCondition.wait(until:)` does; spurious wake-ups are possible.
    func wait(on condition: NSCondition, untilUptime deadline: UInt64)
}

extension HubClock {
    /// `wait(on:untilUptime:)` for at most `duration` from now.
    public func wait(on condition: NSCondition, for duration: Duration) {
        wait(on: condition, untilUptime: uptimeNanos() &+ duration.nanoseconds)
    }
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

    public func wait(on condition: NSCondition, untilUptime deadline: UInt64) {
        let seconds = Double(deadline &- min(deadline, uptimeNanos())) / 1e9
        _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
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

extension Duration {
    /// Whole nanoseconds, with a negative duration as 0: what the clock's uptime counts in.
    public var nanoseconds: UInt64 {
        UInt64(max(0, components.seconds)) * 1_000_000_000 + UInt64(max(0, components.attoseconds) / 1_000_000_000)
    }
}
