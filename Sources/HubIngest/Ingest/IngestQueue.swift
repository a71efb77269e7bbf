import Foundation

/// The bounded hand-over from device sockets to the writer thread.
///
/// Memory bound: `capacityRows` readings, counted from the moment a burst is pushed until
/// its write commits (so the batch being written counts too), plus the bursts already read
/// when the bound is reached: at most one read cycle per connection, each below
/// `maxFrameBytes × maxMessagesPerRead`. A push over the bound is still taken (nothing is
/// dropped); the pusher must stop reading its socket until `whenSpaceAvailable` calls back.
public final class IngestQueue: @unchecked Sendable {
    public let capacityRows: Int
    /// Readers resume once the backlog falls to this level.
    public let resumeBelowRows: Int

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var bursts: [IngestBurst] = []
    private var queuedRows = 0
    private var accountedRows = 0
    private var oldestPushNanos: UInt64?
    private var waitingForSpace: [@Sendable () -> Void] = []
    private var closed = false
    private var pushedBursts = 0
    private var releasedBursts = 0
    private var barriers: [(target: Int, callback: @Sendable () -> Void)] = []

    public init(capacityRows: Int, resumeBelowRows: Int? = nil) {
        precondition(capacityRows > 0)
        self.capacityRows = capacityRows
        self.resumeBelowRows = resumeBelowRows ?? capacityRows / 2
    }

    /// Queues a burst. - Returns: `false` when the queue is over its bound: stop reading.
    @discardableResult
    public func push(_ burst: IngestBurst, nowNanos: UInt64) -> Bool {
        let rows = burst.rowCount
        condition.lock()
        defer { condition.unlock() }
        bursts.append(burst)
        pushedBursts += 1
        queuedRows += rows
        accountedRows += rows
        if oldestPushNanos == nil { oldestPushNanos = nowNanos }
        condition.signal()
        return accountedRows < capacityRows
    }

    /// Calls `resume` (from any thread) once the backlog is below `resumeBelowRows`; at once if it is.
    public func whenSpaceAvailable(_ resume: @escaping @Sendable () -> Void) {
        condition.lock()
        if accountedRows <= resumeBelowRows || closed {
            condition.unlock()
            resume()
            return
        }
        waitingForSpace.append(resume)
        condition.unlock()
    }

    /// The writer's wait: returns bursts once `policy` says flush, or when closed.
    /// An empty answer means the queue is closed and drained.
    func take(policy: FlushPolicy, clock: any HubClock) -> [IngestBurst] {
        condition.lock()
        defer { condition.unlock() }
        while true {
            let decision = policy.decide(
                queuedRows: queuedRows, queuedBursts: bursts.count, oldestNanos: oldestPushNanos, nowNanos: clock.uptimeNanos(),
                closing: closed)
            switch decision {
            case .flush:
                var taken: [IngestBurst] = []
                var rows = 0
                while !bursts.isEmpty && (taken.isEmpty || rows < policy.maxRows) {
                    let burst = bursts.removeFirst()
                    rows += burst.rowCount
                    taken.append(burst)
                }
                queuedRows -= rows
                oldestPushNanos = bursts.isEmpty ? nil : clock.uptimeNanos()
                return taken
            case .wait(let untilNanos):
                if let untilNanos {
                    clock.wait(on: condition, untilUptime: untilNanos)
                } else {
                    condition.wait()
                }
            case .stop:
                return []
            }
        }
    }

    /// Called after a write committed: frees its rows and wakes paused readers.
    func release(rows: Int, bursts count: Int) {
        condition.lock()
        accountedRows -= rows
        releasedBursts += count
        var wake: [@Sendable () -> Void] = []
        if accountedRows <= resumeBelowRows {
            wake = waitingForSpace
            waitingForSpace = []
        }
        let released = releasedBursts
        let due = barriers.filter { $0.target <= released }
        barriers.removeAll { $0.target <= released }
        condition.unlock()
        wake.forEach { $0() }
        due.forEach { $0.callback() }
    }

    /// Calls `callback` (from any thread) once every burst pushed before this call has been
    /// written: from then on, everything accepted so far is readable in the database.
    public func whenWritten(_ callback: @escaping @Sendable () -> Void) {
        condition.lock()
        if releasedBursts >= pushedBursts {
            condition.unlock()
            callback()
            return
        }
        barriers.append((pushedBursts, callback))
        condition.unlock()
    }

    /// Stops taking new work; the writer drains what is queued, then stops.
    func close() {
        condition.lock()
        closed = true
        let wake = waitingForSpace
        waitingForSpace = []
        condition.broadcast()
        condition.unlock()
        wake.forEach { $0() }
    }

    /// Readings queued or being written.
    public var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return accountedRows
    }
}
