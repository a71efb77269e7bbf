/// Where committed telemetry goes: the storage layer implements it over PostgreSQL.
/// Called only from the writer thread, so it may block.
public protocol IngestSink: AnyObject {
    /// Writes the bursts in one transaction: readings, rejected frames, the devices' new
    /// marks and sessions. Either all of it commits or none of it does.
    func write(_ bursts: [IngestBurst]) throws

    /// The committed marks of these devices, read after a failed write to find out which
    /// frames did commit before the failure.
    func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64]
}
