import Dispatch
import Foundation
import HubIngest
import NATS
import NATSClient
import NIOConcurrencyHelpers

/// Handing devices over: a claim asks the previous owner to drain (the asking side runs on
/// a claim thread, the answering side on the NATS loop).
extension ClusterNode {
    func drain(_ requests: [String: [DrainItem]], timeoutNanos: UInt64) {
        let waiting = DispatchGroup()
        for (owner, items) in requests where ClusterConfiguration.isValidNodeID(owner) && owner != node {
            guard let payload = try? JSONEncoder().encode(DrainRequest(devices: items)) else { continue }
            waiting.enter()
            nats.request(subject: ClusterSubjects.drain(node: owner), payload: Array(payload), timeoutNanos: timeoutNanos) { [logger] result in
                if case .failure(let error) = result, (error as? NATSRequestError) != .noResponders {
                    logger.info("cluster: a drain went unanswered; the claim fences that node", metadata: ["node": "\(owner)", "error": "\(error)"])
                }
                waiting.leave()
            }
        }
        _ = waiting.wait(timeout: .now() + .nanoseconds(Int(min(timeoutNanos, UInt64(Int.max)))))
    }

    func answerDrain(_ message: Message) {
        guard let replyTo = message.replyTo, let request = DrainRequest.decoded(from: message.payload) else { return }
        let reply = Countdown(total: request.devices.count) { [nats] drained in
            nats.publish(subject: replyTo, payload: Array(#"{"drained":\#(drained)}"#.utf8))
        }
        for item in request.devices {
            // A newer connection here (claimed after the asker looked) is not handed over.
            guard let (connection, session) = registry.connection(id: item.device), session <= item.session else {
                reply.skip()
                continue
            }
            connection.replace(whenDrained: { reply.done() })
        }
        loop.scheduleTask(in: .nanoseconds(Int64(configuration.drainTimeout.nanoseconds))) { reply.expire() }
    }
}

/// Counts parts that finish and calls `answer` once: when all have, or at `expire()`.
final class Countdown: Sendable {
    private let state: NIOLockedValueBox<(left: Int, done: Int, answered: Bool)>
    private let answer: @Sendable (Int) -> Void

    init(total: Int, answer: @escaping @Sendable (_ done: Int) -> Void) {
        state = NIOLockedValueBox((total, 0, false))
        self.answer = answer
        if total == 0 { expire() }
    }

    func done() { step(done: 1) }
    func skip() { step(done: 0) }

    /// The bound passed: answer with what is done so far.
    func expire() {
        let done: Int? = state.withLockedValue { state in
            guard !state.answered else { return nil }
            state.answered = true
            return state.done
        }
        if let done { answer(done) }
    }

    private func step(done: Int) {
        let last = state.withLockedValue { state -> Bool in
            state.left -= 1
            state.done += done
            return state.left == 0
        }
        if last { expire() }
    }
}
