/// Cluster mode (`--cluster`, `--node-id`): several hubs on one PostgreSQL, with NATS
/// between them (docs/cluster.md).
public struct ClusterConfiguration: Sendable {
    /// The NATS server, `nats://host:port`.
    public var natsURL: String
    /// This node's name: unique in the cluster, `[A-Za-z0-9_-]`, 1 to 64 characters. It
    /// names the node's NATS subjects and the `owner` of the devices it holds.
    public var nodeID: String
    /// How long a claim waits for the previous owner to drain (`--drain-timeout-ms`).
    public var drainTimeout: Duration = .seconds(1)
    /// How often a node announces its interest, which is also its heartbeat.
    public var heartbeatInterval: Duration = .seconds(1)
    /// A node not heard for this long is taken as dead: its devices are shown offline and
    /// its ownership is cleared.
    public var deadAfter: Duration = .seconds(3)
    /// How long a node may be without NATS before it closes its device sockets (1013), so
    /// that devices move to nodes that can reach the rest of the cluster. Ingest stays safe
    /// meanwhile (the fence), but this node's devices are invisible to other nodes' dashboards.
    public var natsLossBound: Duration = .seconds(30)
    /// How long the interest of a node not heard is kept (frames still go to it).
    public var interestExpiry: Duration = .seconds(60)
    /// How long a replay waits for the other nodes' barriers before it reads history anyway.
    public var barrierTimeout: Duration = .seconds(2)

    public init(natsURL: String, nodeID: String) {
        self.natsURL = natsURL
        self.nodeID = nodeID
    }

    /// Whether `id` may name a node.
    public static func isValidNodeID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }
    }
}

/// A cluster configuration the hub cannot start with.
struct ClusterConfigurationError: Error, CustomStringConvertible {
    let description: String
}
