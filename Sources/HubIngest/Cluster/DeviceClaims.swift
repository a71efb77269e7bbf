/// What a claim read back: the connection's session and the device's committed mark.
public struct DeviceClaim: Sendable, Equatable {
    public let session: Int64
    /// The highest seq stored or rejected for the device, by any node: the welcome's `last_seq`.
    public let mark: UInt64

    public init(session: Int64, mark: UInt64) {
        self.session = session
        self.mark = mark
    }
}

/// Why a claim failed: the connection cannot be welcomed and closes (the device retries).
public enum ClaimFailure: Error, Sendable, Equatable {
    /// The database did not answer within the claim's bound.
    case unavailable(String)
    /// More claims are waiting than the bound allows (a reconnect storm past it).
    case overloaded
    /// A newer connection of the same device, on this node, claimed in the same round.
    case superseded
    /// The device's row is gone (purged meanwhile).
    case unknownDevice
    /// The hub is stopping.
    case stopping
}

/// Claims devices in the shared database at connect (cluster mode). PostgreSQL is the only
/// authority: a claim raises the device's session by one, makes this node its owner, and
/// reads back its mark. Every ingest write is fenced by that session (`DeviceFence`), so a
/// node that lost the device can no longer commit for it.
public protocol DeviceClaims: Sendable {
    /// Claims `device` for a new connection from `remote`. `completion` is called once, on
    /// any thread.
    func claim(_ device: DeviceRecordRef, remote: String, completion: @escaping @Sendable (Result<DeviceClaim, ClaimFailure>) -> Void)
}

/// One device a node is asked to hand over: its connections with a session up to `session`
/// stop taking frames, commit what they hold, and close with 4001.
public struct DrainItem: Codable, Sendable, Hashable {
    public let device: String
    public let session: Int64

    public init(device: String, session: Int64) {
        self.device = device
        self.session = session
    }
}

/// Asks other nodes to drain devices before a claim takes them over.
public protocol NodeDrain: Sendable {
    /// Sends each node (by id) its items and blocks until every node answered that they are
    /// drained, or `timeoutNanos` passed. Called from a claim thread, never an event loop.
    /// A node that does not answer is not waited for: the fence keeps it from committing.
    func drain(_ requests: [String: [DrainItem]], timeoutNanos: UInt64)
}
