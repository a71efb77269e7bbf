import DequeModule
import Foundation

/// The bounded hand-over from device sockets to the writer threads.
///
/// **Lanes.** The queue has one lane per writer thread. A device's bursts always go to the
/// same lane (its storage key modulo the lane count), so one writer commits them, in order:
/// a device's mark lives in one writer and its acks stay in order.
///
/// Memory bound: `capacityRows` readings in all lanes together, counted from the moment a
/// burst is pushed until its write commits (so the batches being written count too), plus
/// the bursts already read when the bound is reached: at most one read cycle per
/// connection, each below `maxFrameBytes × maxMessagesPerRead`. A push over the bound is
/// still taken (nothing is dropped); the pusher must stop reading its socket until
/// `whenSpaceAvailable` calls back.
public final class IngestQueue: @unchecked Sendable {
    public let capacityRows: Int
    /// Readers resume once the backlog falls to this level.
    public let resumeBelowRows: Int
    /// The number of lanes, one per writer thread.
    public var laneCount: Int { lanes.count }

    /// What one writer takes from; guarded by its own condition, so writers never contend.
    private final class Lane {
        let condition = NSCondition()
        var bursts: Deque<IngestBurst> = []
        var queuedRows = 0
        var oldestPushNanos: UInt64?
        var closed = false
    }

    private let lanes: [Lane]

    /// The bound and the barriers, shared by all lanes. Guarded by `lock`; a push takes it
    /// inside its lane's condition, nothing takes a lane's condition while holding it.
    private let lock = NSLock()
    private var accountedRows: [Int]
    private var pushedBursts: [Int]
    private var releasedBursts: [Int]
    private var waitingForSpace: [@Sendable () -> Void] = []
    private var barriers: [(targets: [Int], callback: @Sendable () -> Void)] = []
    private var closed = false

    public init(capacityRows: Int, resumeBelowRows: Int? = nil, lanes: Int = 1) {
        precondition(capacityRows > 0 && lanes > 0)
        self.capacityRows = capacityRows
        self.resumeBelowRows = resumeBelowRows ?? capacityRows / 2
        self.lanes = (0..<lanes).map { _ in Lane() }
        accountedRows = Array(repeating: 0, count: lanes)
        pushedBursts = Array(repeating: 0, count: lanes)
        releasedBursts = Array(repeating: 0, count: lanes)
    }

    /// The lane that takes a device's bursts.
    public func lane(ofDeviceKey key: Int32) -> Int {
        Int(UInt32(bitPattern: key) % UInt32(lanes.count))
    }

    /// Queues a burst. - Returns: `false` when the queue is over its bound: stop reading.
    @discardableResult
    public func push(_ burst: IngestBurst, nowNanos: UInt64) -> Bool {
        let rows = burst.rowCount
        let index = lane(ofDeviceKey: burst.device.key)
        let lane = lanes[index]
        lane.condition.lock()
        // Counted and queued under the lane's condition, so the lane's count and order agree:
        // a barrier waiting for n bursts of this lane waits for its first n.
        lock.lock()
        accountedRows[index] += rows
        pushedBursts[index] += 1
        let underBound = accountedRows.reduce(0, +) < capacityRows
        lock.unlock()
        lane.bursts.append(burst)
        lane.queuedRows += rows
        if lane.oldestPushNanos == nil { lane.oldestPushNanos = nowNanos }
        lane.condition.signal()
        lane.condition.unlock()
        return underBound
    }

    /// Calls `resume` (from any thread) once the backlog is below `resumeBelowRows`; at once if it is.
    public func whenSpaceAvailable(_ resume: @escaping @Sendable () -> Void) {
        lock.lock()
        if accountedRows.reduce(0, +) <= resumeBelowRows || closed {
            lock.unlock()
            resume()
            return
        }
        waitingForSpace.append(resume)
        lock.unlock()
    }

    /// A writer's wait: returns the lane's bursts once `policy` says flush. An empty answer
    /// means `idleUntil` came with nothing to take; `nil` means the queue is closed and the
    /// lane drained.
    func take(lane index: Int = 0, policy: FlushPolicy, clock: any HubClock, idleUntil: UInt64? = nil) -> [IngestBurst]? {
        let lane = lanes[index]
        lane.condition.lock()
        defer { lane.condition.unlock() }
        while true {
            let now = clock.uptimeNanos()
            var decision = policy.decide(
                queuedRows: lane.queuedRows, queuedBursts: lane.bursts.count, oldestNanos: lane.oldestPushNanos,
                nowNanos: now, closing: lane.closed)
            if let idleUntil, case .wait(let until) = decision {
                if now >= idleUntil { return [] }
                decision = .wait(untilNanos: min(until ?? idleUntil, idleUntil))
            }
            switch decision {
            case .flush:
                var taken: [IngestBurst] = []
                var rows = 0
                while let burst = lane.bursts.first, taken.isEmpty || rows < policy.maxRows {
                    lane.bursts.removeFirst()
                    rows += burst.rowCount
                    taken.append(burst)
                }
                lane.queuedRows -= rows
                lane.oldestPushNanos = lane.bursts.isEmpty ? nil : clock.uptimeNanos()
                return taken
            case .wait(let untilNanos):
                if let untilNanos {
                    clock.wait(on: lane.condition, untilUptime: untilNanos)
                } else {
                    lane.condition.wait()
                }
            case .stop:
                return nil
            }
        }
    }

    /// Called after a lane's write committed: frees its rows and wakes paused readers.
    func release(lane index: Int = 0, rows: Int, bursts count: Int) {
        lock.lock()
        accountedRows[index] -= rows
        releasedBursts[index] += count
        var wake: [@Sendable () -> Void] = []
        if accountedRows.reduce(0, +) <= resumeBelowRows {
            wake = waitingForSpace
            waitingForSpace = []
        }
        var due: [@Sendable () -> Void] = []
        barriers.removeAll { barrier in
            guard zip(barrier.targets, releasedBursts).allSatisfy({ $0 <= $1 }) else { return false }
            due.append(barrier.callback)
            return true
        }
        lock.unlock()
        wake.forEach { $0() }
        due.forEach { $0() }
    }

    /// Calls `callback` (from any thread) once every burst pushed before this call has been
    /// written, in every lane: from then on, everything accepted so far is readable in the
    /// database.
    public func whenWritten(_ callback: @escaping @Sendable () -> Void) {
        lock.lock()
        if releasedBursts == pushedBursts {
            lock.unlock()
            callback()
            return
        }
        barriers.append((pushedBursts, callback))
        lock.unlock()
    }

    /// Stops taking new work; each writer drains its lane, then stops.
    func close() {
        lock.lock()
        closed = true
        let wake = waitingForSpace
        waitingForSpace = []
        lock.unlock()
        for lane in lanes {
            lane.condition.lock()
            lane.closed = true
            lane.condition.broadcast()
            lane.condition.unlock()
        }
        wake.forEach { $0() }
    }

    /// Readings queued or being written, in all lanes.
    public var depth: Int { lock.withLock { accountedRows.reduce(0, +) } }

    /// Readings queued or being written in one lane.
    func depth(lane index: Int) -> Int { lock.withLock { accountedRows[index] } }
}
