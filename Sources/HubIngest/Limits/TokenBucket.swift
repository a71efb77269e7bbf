/// A token bucket holding one second's worth of tokens.
public struct TokenBucket: Sendable {
    public let perSecond: Double
    private var tokens: Double
    private var lastNanos: UInt64?

    public init(perSecond: Double) {
        self.perSecond = max(perSecond, 1)
        tokens = self.perSecond
    }

    /// Takes one token if there is one.
    public mutating func tryTake(nowNanos: UInt64) -> Bool {
        refill(nowNanos)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Takes one token. - Returns: `nil` if there was one, else the nanoseconds until the
    /// bucket has one again (the token is still taken: the debt is paid by waiting).
    public mutating func take(nowNanos: UInt64) -> UInt64? {
        refill(nowNanos)
        tokens -= 1
        return tokens >= 0 ? nil : UInt64(-tokens / perSecond * 1e9)
    }

    private mutating func refill(_ nowNanos: UInt64) {
        if let last = lastNanos { tokens = min(perSecond, tokens + Double(nowNanos &- last) / 1e9 * perSecond) }
        lastNanos = nowNanos
    }
}
