import NIOConcurrencyHelpers

/// One node's interest: the device patterns its dashboards hold.
public final class NodeInterest: Sendable {
    public let node: String

    init(node: String) {
        self.node = node
    }
}

/// Which other nodes want a device's frames (cluster mode): each node announces the
/// patterns of all its dashboards' subscriptions, with a version that only grows; an
/// announcement older than the one applied is ignored.
///
/// Memory: per node at most `maxPatterns` patterns (a node with more announces `*`).
public final class ClusterInterest: Sendable {
    /// The most patterns one node announces; past it, it announces `*` (everything).
    public static let maxPatterns = 10_000

    private struct Known {
        var version: UInt64
        var interest: NodeInterest
        var patterns: [DevicePattern]
    }

    private let index = SubscriptionIndex<NodeInterest>()
    private let known = NIOLockedValueBox<[String: Known]>([:])

    public init() {}

    /// Applies a node's announcement. - Returns: whether it was newer than what was known.
    @discardableResult
    public func update(node: String, version: UInt64, patterns texts: [String]) -> Bool {
        let patterns = Array(Set(texts.prefix(Self.maxPatterns).compactMap(DevicePattern.init)))
        let interest = NodeInterest(node: node)
        // The index changes under this lock too (lock order: `known`, then the index's), so
        // announcements and removals racing each other reach the index in the order they
        // were applied: an older one never lands after a newer one.
        return known.withLockedValue { known in
            let old = known[node]
            if let old, old.version >= version { return false }
            known[node] = Known(version: version, interest: interest, patterns: patterns)
            index.add(interest, patterns: patterns)
            if let old { index.remove(old.interest, patterns: old.patterns) }
            return true
        }
    }

    /// Forgets a node (it left, or stopped answering).
    public func remove(node: String) {
        known.withLockedValue { known in
            guard let old = known.removeValue(forKey: node) else { return }
            index.remove(old.interest, patterns: old.patterns)
        }
    }

    /// The nodes whose dashboards match `device`.
    public func nodes(for device: String) -> [NodeInterest] {
        index.matching(device)
    }

    /// The nodes that announced interest, and so are alive as far as this node knows.
    public var nodes: [String] { known.withLockedValue { Array($0.keys) } }
}
