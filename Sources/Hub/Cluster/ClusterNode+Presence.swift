import Foundation
import HubIngest
import HubProtocol
import NATS

/// Presence across nodes, and what happens to a node that stops being heard.
extension ClusterNode {
    func receivePresence(_ message: Message) {
        guard let note = PresenceNote.decoded(from: message.payload) else { return }
        if note.event.online {
            state.value.onlineElsewhere[note.key] = (note.node, note.event)
        } else if state.value.onlineElsewhere[note.key]?.event.session == note.event.session {
            state.value.onlineElsewhere[note.key] = nil
        }
        fanout.withLockedValue { $0 }?.publishRemotePresence(note.event, key: note.key, on: loop)
    }

    /// Nodes not heard for `deadAfter`: their devices are shown offline here (unless a newer
    /// session already came online), and their ownership is cleared in PostgreSQL, so the
    /// device list does not show them held. Their interest stays for `interestExpiry`: a
    /// node cut off from NATS for a while (not dead) gets its frames again at once when it
    /// is back, and its repair reads from PostgreSQL what it missed.
    func checkLiveness() {
        let now = clock.uptimeNanos()
        for (node, heard) in state.value.heard where now &- heard.at > configuration.interestExpiry.nanoseconds {
            state.value.heard[node] = nil
            interest.remove(node: node)
        }
        let limit = configuration.deadAfter.nanoseconds
        let dead = state.value.heard.filter { !$0.value.dead && now &- $0.value.at > limit }.map(\.key)
        for node in dead {
            state.value.heard[node]!.dead = true
            logger.warning("cluster: a node stopped answering; its devices are offline until they reconnect", metadata: ["node": "\(node)"])
            let orphaned = state.value.onlineElsewhere.filter { $0.value.node == node }
            for (key, entry) in orphaned {
                state.value.onlineElsewhere[key] = nil
                var offline = entry.event
                offline.online = false
                offline.atMicros = clock.wallMicros()
                fanout.withLockedValue { $0 }?.publishRemotePresence(offline, key: key, on: loop)
            }
            clearOwner(node)
        }
    }
}
