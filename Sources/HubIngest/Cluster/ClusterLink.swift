import HubProtocol

/// What a node tells the rest of the cluster (cluster mode; `nil` on a single node). The
/// transport calls it from event loops, so it never blocks.
public protocol ClusterLink: Sendable {
    /// A device connected to this node came online or went offline.
    func presenceChanged(_ presence: Presence, key: Int32)
}
