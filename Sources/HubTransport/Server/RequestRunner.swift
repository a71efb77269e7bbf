import NIOConcurrencyHelpers
import ServiceLifecycle

/// Runs the asynchronous work connections start (REST calls, replays, auto-provisioning)
/// as children of one task group, so none outlives the server and none is a loose task.
///
/// Bound: each connection has at most `maxRequestsInFlight` of them at once (HTTP one).
/// At the graceful shutdown the runner takes no more work and cancels what runs; it
/// returns once every child has. Work submitted after that is refused.
public final class RequestRunner: Service {
    typealias Work = @Sendable () async -> Void

    private let jobs: AsyncStream<Work>
    private let inbox: AsyncStream<Work>.Continuation

    public init() {
        (jobs, inbox) = AsyncStream.makeStream(of: Work.self)
    }

    /// Runs `work` soon, as a child of `run`. - Returns: false if the runner has stopped
    /// (the caller answers for it).
    func submit(_ work: @escaping Work) -> Bool {
        if case .terminated = inbox.yield(work) { return false }
        return true
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                for await work in jobs { group.addTask { await work() } }
            } onGracefulShutdown: { [inbox] in
                inbox.finish()
            }
            inbox.finish()
            group.cancelAll()
        }
        // Cancelled instead: work submitted holds its connection; dropped, not run.
        for await _ in jobs {}
    }
}
