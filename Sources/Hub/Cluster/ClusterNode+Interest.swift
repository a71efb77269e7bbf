import Foundation
import HubIngest
import NATS

/// Interest: which device patterns each node's dashboards hold. Announced on change (a
/// little later, so a burst of subscriptions is one note) and every heartbeat interval,
/// which doubles as the node's heartbeat.
extension ClusterNode {
    func interestChanged() {
        version.withLockedValue { $0 += 1 }
        loop.execute { [self] in
            guard !state.value.announceScheduled else { return }
            state.value.announceScheduled = true
            loop.scheduleTask(in: .milliseconds(10)) { [self] in announce() }
        }
    }

    /// This node's interest as announced: `*` past `ClusterInterest.maxPatterns`.
    func currentInterest() -> InterestNote {
        let patterns = fanout.withLockedValue { $0 }?.localPatterns ?? []
        return InterestNote(
            node: node, version: version.withLockedValue { $0 },
            patterns: patterns.count > ClusterInterest.maxPatterns ? ["*"] : patterns)
    }

    /// Publishes the interest note (on the NATS loop).
    func announce() {
        state.value.announceScheduled = false
        guard let payload = try? JSONEncoder().encode(currentInterest()) else { return }
        nats.publish(subject: ClusterSubjects.interest, payload: Array(payload))
    }

    func receiveInterest(_ message: Message) {
        guard let note = InterestNote.decoded(from: message.payload), note.node != node,
            ClusterConfiguration.isValidNodeID(note.node)
        else { return }
        let isNew = state.value.heard.updateValue((clock.uptimeNanos(), false), forKey: note.node)?.dead ?? true
        interest.update(node: note.node, version: note.version, patterns: note.patterns)
        // A node just (re)joined: tell it ours now rather than at the next heartbeat.
        if isNew { announce() }
    }
}
