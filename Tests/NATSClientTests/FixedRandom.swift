/// A generator that returns the given values in turn, for tests that pin the randomness.
///
/// Beware the standard library's unbiased sampling: it draws again while the value falls in
/// the rejected sliver at the bottom, so a generator that only returns 0 never finishes.
/// `1 << 20` is a small value that is accepted (it maps to 0 for bounds under 2^44).
struct FixedRandom: RandomNumberGenerator {
    private var values: [UInt64]
    private var index = 0

    init(_ values: [UInt64]) { self.values = values }

    mutating func next() -> UInt64 {
        defer { index = (index + 1) % values.count }
        return values[index]
    }
}

/// A small seeded generator (SplitMix64), for tests that want varied but repeatable values.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
