import NIOConcurrencyHelpers

/// Failed authentication per source address (contract section 7): each address has a
/// bucket of `perSecond` failures, refilled continuously. The failure that empties it
/// blocks the address for whole seconds, until the bucket holds a failure again: until
/// then everything it asks that needs a credential gets 429 with a `Retry-After` that
/// counts down to the end of the block, before any credential is checked, so a guesser
/// learns nothing and costs nothing, and a client that honours `Retry-After` is never
/// refused again for the same burst.
///
/// Bound: at most `maxAddresses` buckets (about 100 bytes each); when full, buckets that
/// have refilled are forgotten (they hold no debt), and if that frees nothing, all are:
/// each address then starts again with a full budget, and the sweep costs O(1) per
/// address on average.
final class AuthFailureLimiter: Sendable {
    static let maxAddresses = 10_000

    private struct Bucket {
        var tokens: Double
        var lastNanos: UInt64
        var blockedUntilNanos: UInt64 = 0
    }

    private let perSecond: Double
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    init(perSecond: Int) {
        self.perSecond = Double(max(1, perSecond))
    }

    /// Whether `address` has used up its failures for now.
    func isBlocked(_ address: String, nowNanos: UInt64) -> Bool {
        buckets.withLockedValue { buckets in
            guard let bucket = buckets[address] else { return false }
            return nowNanos < bucket.blockedUntilNanos
        }
    }

    /// Counts a 401 or 403 answered to `address`.
    func recordFailure(_ address: String, nowNanos: UInt64) {
        buckets.withLockedValue { buckets in
            var bucket = buckets[address] ?? Bucket(tokens: perSecond, lastNanos: nowNanos)
            refill(&bucket, nowNanos)
            bucket.tokens = max(bucket.tokens - 1, -perSecond)
            if bucket.tokens < 1 && nowNanos >= bucket.blockedUntilNanos {
                let seconds = max(1, ((1 - bucket.tokens) / perSecond).rounded(.up))
                bucket.blockedUntilNanos = nowNanos + UInt64(seconds * 1e9)
            }
            if buckets[address] == nil && buckets.count >= Self.maxAddresses { evict(&buckets, nowNanos) }
            buckets[address] = bucket
        }
    }

    /// Seconds until `address` may try again (for `Retry-After`).
    func retryAfterSeconds(_ address: String, nowNanos: UInt64) -> Int {
        buckets.withLockedValue { buckets in
            guard let bucket = buckets[address], nowNanos < bucket.blockedUntilNanos else { return 1 }
            return max(1, Int((Double(bucket.blockedUntilNanos - nowNanos) / 1e9).rounded(.up)))
        }
    }

    private func refill(_ bucket: inout Bucket, _ nowNanos: UInt64) {
        bucket.tokens = min(perSecond, bucket.tokens + Double(nowNanos &- bucket.lastNanos) / 1e9 * perSecond)
        bucket.lastNanos = nowNanos
    }

    private func evict(_ buckets: inout [String: Bucket], _ nowNanos: UInt64) {
        buckets = buckets.filter {
            nowNanos < $0.value.blockedUntilNanos || Double(nowNanos &- $0.value.lastNanos) / 1e9 * perSecond + $0.value.tokens < perSecond
        }
        if buckets.count >= Self.maxAddresses / 2 { buckets = [:] }
    }
}
