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
}
