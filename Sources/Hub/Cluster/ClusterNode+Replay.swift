import Foundation
import HubIngest
import NATS
import NATSClient

/// Frames for this node's dashboards, and the barrier that keeps replay gap-free across
/// nodes.
extension ClusterNode {
    func receiveFrames(_ message: Message) {
        guard let entries = RemoteFrames.decode(message.payload) else {
            logger.warning("cluster: a frames message that does not decode was dropped")
            return
        }
        guard let fanout = fanout.withLockedValue({ $0 }) else { return }
        for entry in entries { fanout.publishRemote(device: entry.device, frames: entry.frames, on: loop) }
    }

    /// Before a replay reads history: every other node installs this node's interest, then
    /// answers once what it accepted before is committed. Frames it accepts later come
    /// live; so history and live events meet with no gap. A node that does not answer
    /// within `barrierTimeout` is not waited for.
    func barrier(_ done: @escaping @Sendable () -> Void) {
        barrier(within: configuration.barrierTimeout.nanoseconds, done)
    }

    /// A barrier that keeps asking a node not connected yet (no responders, or this node
    /// not yet back) until `bound` has passed: after a NATS outage, the nodes come back one
    /// by one.
    func barrier(within bound: UInt64, _ done: @escaping @Sendable () -> Void) {
        let nodes = interest.nodes.filter { $0 != node }
        guard !nodes.isEmpty, let payload = try? JSONEncoder().encode(currentInterest()) else { return done() }
        let countdown = Countdown(total: nodes.count) { _ in done() }
        let deadline = clock.uptimeNanos() &+ bound
        for other in nodes { ask(other, payload: Array(payload), deadline: deadline, countdown) }
    }

    private func ask(_ other: String, payload: [UInt8], deadline: UInt64, _ countdown: Countdown) {
        let left = deadline &- min(deadline, clock.uptimeNanos())
        nats.request(subject: ClusterSubjects.barrier(node: other), payload: payload, timeoutNanos: max(1, left)) { [self] result in
            let absent: Bool
            switch result {
            case .success: absent = false
            case .failure(let error): absent = [.noResponders, .notConnected].contains(error as? NATSRequestError)
            }
            guard absent, clock.uptimeNanos() < deadline else { return countdown.done() }
            loop.scheduleTask(in: .milliseconds(100)) { [self] in ask(other, payload: payload, deadline: deadline, countdown) }
        }
    }

    func answerBarrier(_ message: Message) {
        guard let replyTo = message.replyTo, let note = InterestNote.decoded(from: message.payload),
            ClusterConfiguration.isValidNodeID(note.node)
        else { return }
        interest.update(node: note.node, version: note.version, patterns: note.patterns)
        queue.whenWritten { [nats] in nats.publish(subject: replyTo, payload: Array("{}".utf8)) }
    }
}
