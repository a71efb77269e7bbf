/// A writer's rollup deltas of committed batches that are not in `rollup_delta` yet, and
/// the writer id (`rollup_writer`) under which its batches' `rollup_pending` rows are kept.
/// Merged per (device, metric, minute) across batches, so a device that sends many frames a
/// second still makes one delta per metric and minute each flush.
struct HeldRollups {
    var writer: Int32 = 0
    /// The batch number the next batch's `rollup_pending` row gets.
    private(set) var nextBatch: Int64 = 1
    /// Batches committed with a `rollup_pending` row since the last flush.
    private(set) var batches = 0
    private(set) var deltas = RollupDeltas()

    /// A batch with readings committed, with its `rollup_pending` row numbered `nextBatch`.
    mutating func committed(_ batch: RollupDeltas) {
        deltas.merge(batch)
        batches += 1
        nextBatch += 1
    }

    /// The deltas were written and the batches' rows removed.
    mutating func flushed() {
        deltas = RollupDeltas()
        batches = 0
    }
}
