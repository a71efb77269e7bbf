import Foundation
import NIOConcurrencyHelpers

/// A dedicated, named thread that belongs to a service: blocking work (libpq) runs on it,
/// never on an event loop or the cooperative pool. The service starts it in `run()` and
/// awaits `join()` when it stops, so nothing outlives the service group.
public final class ServiceThread: Sendable {
    private struct State {
        var finished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    private init() {}

    /// Starts `body` on a new thread called `name`.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) -> ServiceThread {
        let handle = ServiceThread()
        let thread = Thread {
            body()
            handle.finish()
        }
        thread.name = name
        thread.start()
        return handle
    }

    /// Returns once the thread's body has returned (at once if it has).
    public func join() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLockedValue { state -> Bool in
                if state.finished { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func finish() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.finished = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }
}

extension Array where Element == ServiceThread {
    /// Waits for every thread.
    public func joinAll() async {
        for thread in self { await thread.join() }
    }
}
