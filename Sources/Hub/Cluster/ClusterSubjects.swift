/// The NATS subjects nodes talk on. Every node subscribes to the broadcast subjects and to
/// its own; no message names a subject a client chose.
enum ClusterSubjects {
    /// Presence changes of devices, from the node that holds them.
    static let presence = "hub.presence"

    /// Drain requests for the devices a node holds (request/reply).
    static func drain(node: String) -> String { "hub.node.\(node).drain" }
}
