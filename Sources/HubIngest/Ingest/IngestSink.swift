/// Where committed telemetry goes: the storage layer implements it over PostgreSQL.
/// Called only from the writer thread, so it may block.
public protocol IngestSink: AnyObject {
    /// Writes the bursts in one transaction: readings, rejected frames, the devices' new
    /// marks and sessions. Either all of it commits or none of it does, except for fenced
    /// devices: when the sink fences (cluster mode), the bursts of a session that no longer
    /// owns its device are left out of the transaction, and their fences are returned.
    /// - Returns: the fences that failed; their bursts were not stored.
    func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence>

    /// The committed marks of these devices, read after a failed write to find out which
    /// frames did commit before the failure.
    func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64]

    /// Rollup aggregates of committed batches the sink holds to write later (0 when it
    /// writes them with each batch). The writer flushes them every second and when many.
    var heldRollups: Int { get }

    /// Writes the held rollup aggregates, in a transaction of their own.
    func flushRollups() throws
}

extension IngestSink {
    public var heldRollups: Int { 0 }
    public func flushRollups() throws {}
}
