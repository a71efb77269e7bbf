/// How long to wait before the next connection attempt: exponential backoff with full jitter.
///
/// The ceiling starts at `minNanos` and doubles with each failed attempt up to `maxNanos`;
/// the delay is drawn uniformly from `0...ceiling`. Full jitter spreads out clients that
/// lost the same server at the same moment, so they do not all come back in step.
struct ReconnectBackoff: Sendable, Equatable {
    var minNanos: UInt64
    var maxNanos: UInt64

    /// The largest delay for `attempt` (0 for the first retry): `minNanos × 2^attempt`,
    /// capped at `maxNanos` (or at `minNanos` when that is the larger).
    func ceiling(attempt: Int) -> UInt64 {
        let cap = max(minNanos, maxNanos)
        guard attempt > 0 else { return min(minNanos, cap) }
        guard attempt < UInt64.bitWidth else { return cap }
        let (scaled, overflow) = minNanos.multipliedReportingOverflow(by: 1 << UInt64(attempt))
        return overflow ? cap : min(scaled, cap)
    }

    /// A delay in `0...ceiling(attempt:)`, drawn from `random`.
    func delay(attempt: Int, using random: inout some RandomNumberGenerator) -> UInt64 {
        UInt64.random(in: 0...ceiling(attempt: attempt), using: &random)
    }
}
