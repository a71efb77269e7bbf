import Foundation

/// A seeded random number generator (SplitMix64): a failing random test names its seed,
/// and `HUB_TEST_SEED=<seed>` runs it again with the same input.
public struct SeededGenerator: RandomNumberGenerator {
    public let seed: UInt64
    private var state: UInt64

    /// The seed from `HUB_TEST_SEED`, or a fresh one.
    public init() {
        self.init(seed: EnvironmentSeed.value ?? UInt64.random(in: 0...UInt64.max))
    }

    public init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private enum EnvironmentSeed {
    static let value: UInt64? = getenv("HUB_TEST_SEED").flatMap { UInt64(String(cString: $0)) }
}
