/// One batch's readings as per-device (seq, time) ranges, for its `rollup_pending` row: the
/// fold finds exactly these readings again through the `(device_key, ts)` index. A range
/// spans at most an hour of reading time, so a device that mixes far-apart times pays with
/// more ranges, not with scans of its whole history.
struct PendingRanges {
    /// The longest reading time a range covers, in microseconds.
    static let maxSpanMicros: Int64 = 3_600_000_000

    private(set) var keys: [Int32] = []
    private(set) var seqLo: [Int64] = []
    private(set) var seqHi: [Int64] = []
    private(set) var tsLo: [Int64] = []
    private(set) var tsHi: [Int64] = []
    private var open = false

    /// The next readings are of another burst: they start a range of their own.
    mutating func beginDevice() { open = false }

    /// Adds a reading of the current burst's device; seqs come in ascending order.
    mutating func add(device: Int32, seq: Int64, tsMicros: Int64) {
        if open, let last = keys.indices.last,
           max(tsHi[last], tsMicros) - min(tsLo[last], tsMicros) <= Self.maxSpanMicros {
            seqHi[last] = seq
            tsLo[last] = min(tsLo[last], tsMicros)
            tsHi[last] = max(tsHi[last], tsMicros)
            return
        }
        keys.append(device)
        seqLo.append(seq)
        seqHi.append(seq)
        tsLo.append(tsMicros)
        tsHi.append(tsMicros)
        open = true
    }
}
