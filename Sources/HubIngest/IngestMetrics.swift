import Metrics

/// Ingest counters, reported through swift-metrics (Prometheus text at `/metrics`).
public struct IngestMetrics: Sendable {
    public let framesAccepted = Counter(label: "hub_frames_accepted_total")
    public let readingsAccepted = Counter(label: "hub_readings_accepted_total")
    public let framesDuplicate = Counter(label: "hub_frames_duplicate_total")
    public let framesRejected = Counter(label: "hub_frames_rejected_total")
    public let seqGaps = Counter(label: "hub_seq_gaps_total")
    public let backpressurePauses = Counter(label: "hub_ingest_backpressure_pauses_total")
    public let unknownCommandReplies = Counter(label: "hub_command_replies_unknown_total")
    public let batchRows = Recorder(label: "hub_ingest_batch_rows")
    public let commitSeconds = Timer(label: "hub_ingest_commit_seconds")
    public let databaseErrors = Counter(label: "hub_database_errors_total")
    /// Frames the database refused on their own, stored as rejected frames instead.
    public let storageRefused = Counter(label: "hub_frames_storage_refused_total")
    /// Frames left out of a commit because another node claimed their device (cluster mode).
    public let framesFenced = Counter(label: "hub_frames_fenced_total")
    public let devicesConnected = Meter(label: "hub_devices_connected")

    public init() {}
}
