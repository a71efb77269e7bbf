/// A frame the hub could not store, as REST shows it: the dead letters of one device.
public struct RejectedFrameRow: Sendable, Equatable {
    public var receivedMicros: Int64
    public var reason: String
    /// `nil` when the frame was too short to carry one.
    public var seq: Int64?
    /// The payload's size, as received.
    public var bytes: Int

    public init(receivedMicros: Int64, reason: String, seq: Int64?, bytes: Int) {
        self.receivedMicros = receivedMicros
        self.reason = reason
        self.seq = seq
        self.bytes = bytes
    }
}

/// What the fleet summary reads from the database.
public struct FleetCounts: Sendable, Equatable {
    /// Rejected frames received since the time asked, per reason code (the stored
    /// reason up to its first colon: `non_finite_float`, not its detail).
    public var rejectedByReason: [String: Int]
    /// Commands not final yet (`queued`, `sent`, `delivered`).
    public var commandsPending: Int

    public init(rejectedByReason: [String: Int], commandsPending: Int) {
        self.rejectedByReason = rejectedByReason
        self.commandsPending = commandsPending
    }
}

/// The fleet-wide reads of REST (`/api/v1/summary`, a device's rejected frames).
public protocol FleetQueries: Sendable {
    /// The device's rejected frames, newest first.
    func rejected(deviceID: String, limit: Int) async throws -> [RejectedFrameRow]
    func counts(rejectedSinceMicros: Int64) async throws -> FleetCounts
}
