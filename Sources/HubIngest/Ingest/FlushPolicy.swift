/// When the writer flushes: when a batch is full, or when the oldest queued item has
/// waited `maxDelayNanos`, whichever comes first; and everything on shutdown.
public struct FlushPolicy: Sendable {
    public enum Decision: Equatable {
        case flush
        /// Sleep until this time (or until woken by a push); `nil` means until woken.
        case wait(untilNanos: UInt64?)
        case stop
    }

    public var maxRows: Int
    public var maxDelayNanos: UInt64

    public init(maxRows: Int, maxDelayNanos: UInt64) {
        precondition(maxRows > 0)
        self.maxRows = maxRows
        self.maxDelayNanos = maxDelayNanos
    }

    public func decide(queuedRows: Int, queuedBursts: Int, oldestNanos: UInt64?, nowNanos: UInt64, closing: Bool) -> Decision {
        guard queuedBursts > 0, let oldestNanos else { return closing ? .stop : .wait(untilNanos: nil) }
        if closing || queuedRows >= maxRows { return .flush }
        let due = oldestNanos &+ maxDelayNanos
        return nowNanos >= due ? .flush : .wait(untilNanos: due)
    }
}
