import HubProtocol

/// What a node tells the rest of the cluster (cluster mode; `nil` on a single node). The
/// transport calls it from event loops, so it never blocks.
public protocol ClusterLink: Sendable {
    /// A device connected to this node came online or went offline.
    func presenceChanged(_ presence: Presence, key: Int32)

    /// The patterns this node's dashboards hold changed: announce them (soon, not at once).
    func interestChanged()

    /// The other nodes whose dashboards want `device`'s frames. On the hot path: a lookup.
    func interestedNodes(for device: String) -> [NodeInterest]

    /// Sends one `RemoteFrames` message to `node`.
    func forward(_ message: [UInt8], to node: String)

    /// Calls `done` (from any thread) once every other node has installed this node's
    /// interest and committed what it accepted before, or a bound passed: a replay may
    /// then read history with no gap to the live events.
    func barrier(_ done: @escaping @Sendable () -> Void)

    /// A device that dashboards here follow came online in a newer session: frames its old
    /// connection's node committed but never sent on may be missing here. Read back from
    /// history what follows `seq` and hand it to `LiveFanout.publishRepaired`, then call
    /// `LiveFanout.endRepair` (the device's newer frames wait meanwhile).
    func repairStream(_ device: DeviceRecordRef, after seq: UInt64)
}

/// Where a node's command center tells the other nodes of command changes (cluster mode):
/// new and in-flight states at once, final states once committed.
public protocol CommandRelay: Sendable {
    func commandChanged(_ command: Command)
}
