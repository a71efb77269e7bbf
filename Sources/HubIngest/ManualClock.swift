import Foundation
import NIOConcurrencyHelpers

/// A clock that moves only when told: tests and the session fuzzer drive flush timing,
/// expiry and heartbeats with it. Sleepers wake, in deadline order, when `advance` passes
/// their deadline; a cancelled sleeper throws `CancellationError` at once. Service threads
/// blocked in `wait(on:untilUptime:)` wake the same way.
public final class ManualClock: HubClock {
    private struct Sleeper {
        var deadline: UInt64
        var continuation: CheckedContinuation<Void, Error>
    }

    private struct State {
        var wallMicros: Int64
        var uptimeNanos: UInt64
        var sleepers: [Int: Sleeper] = [:]
        var waiters: [Int: (deadline: UInt64, condition: NSCondition)] = [:]
        var nextID = 0
    }

    private let state: NIOLockedValueBox<State>

    public init(wallMicros: Int64 = 1_763_769_600_000_000, uptimeNanos: UInt64 = 1_000_000_000) {
        state = NIOLockedValueBox(State(wallMicros: wallMicros, uptimeNanos: uptimeNanos))
    }

    public func wallMicros() -> Int64 { state.withLockedValue { $0.wallMicros } }
    public func uptimeNanos() -> UInt64 { state.withLockedValue { $0.uptimeNanos } }

    /// Sleepers waiting now.
    public var sleepers: Int { state.withLockedValue { $0.sleepers.count } }

    /// Moves both clocks forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let nanos = UInt64(duration.components.seconds) * 1_000_000_000 + UInt64(duration.components.attoseconds / 1_000_000_000)
        let (due, woken) = state.withLockedValue { state -> ([Sleeper], [NSCondition]) in
            state.uptimeNanos += nanos
            state.wallMicros += Int64(nanos / 1_000)
            let now = state.uptimeNanos
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for id in due.keys { state.sleepers[id] = nil }
            let woken = state.waiters.filter { $0.value.deadline <= now }
            for id in woken.keys { state.waiters[id] = nil }
            return (due.values.sorted { $0.deadline < $1.deadline }, woken.values.map(\.condition))
        }
        for sleeper in due { sleeper.continuation.resume() }
        for condition in woken { condition.withLock { condition.broadcast() } }
    }

    /// Threads blocked in `wait(on:untilUptime:)` now.
    public var waiters: Int { state.withLockedValue { $0.waiters.count } }

    public func wait(on condition: NSCondition, untilUptime deadline: UInt64) {
        // Registered while the caller holds `condition`, so `advance` cannot broadcast
        // between here and the wait.
        let id = state.withLockedValue { state -> Int? in
            guard deadline > state.uptimeNanos else { return nil }
            defer { state.nextID += 1 }
            state.waiters[state.nextID] = (deadline, condition)
            return state.nextID
        }
        guard let id else { return }
        condition.wait()
        state.withLockedValue { _ = $0.waiters.removeValue(forKey: id) }
    }

    public func sleep(for duration: Duration) async throws {
        let nanos = UInt64(max(0, duration.components.seconds)) * 1_000_000_000
            + UInt64(max(0, duration.components.attoseconds) / 1_000_000_000)
        let id = state.withLockedValue { state -> Int in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let resumeNow: Result<Void, Error>? = state.withLockedValue { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if nanos == 0 { return .success(()) }
                    state.sleepers[id] = Sleeper(deadline: state.uptimeNanos + nanos, continuation: continuation)
                    return nil
                }
                if let resumeNow { continuation.resume(with: resumeNow) }
            }
        } onCancel: {
            state.withLockedValue { $0.sleepers.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }
}
