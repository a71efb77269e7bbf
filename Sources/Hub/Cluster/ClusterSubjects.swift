/// The NATS subjects nodes talk on. Every node subscribes to the broadcast subjects and to
/// its own; no subject is built from anything a client sent.
enum ClusterSubjects {
    /// Presence changes of devices, from the node that holds them.
    static let presence = "hub.presence"

    /// Each node's interest (its dashboards' device patterns), sent on change and every
    /// heartbeat interval: it is also the node's heartbeat.
    static let interest = "hub.interest"

    /// Command changes: new and in-flight states, and final states once committed.
    static let commands = "hub.commands"

    /// Drain requests for the devices a node holds (request/reply).
    static func drain(node: String) -> String { "hub.node.\(node).drain" }

    /// Frames for a node's dashboards (`RemoteFrames`).
    static func frames(node: String) -> String { "hub.node.\(node).frames" }

    /// Replay barriers (request/reply): the asker's interest is installed, and the answer
    /// comes once everything the node accepted before is committed.
    static func barrier(node: String) -> String { "hub.node.\(node).barrier" }
}
