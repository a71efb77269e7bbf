import Dispatch
import Foundation
import HubIngest
import HubProtocol
import HubTransport
import Logging
import NATS
import NATSClient
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// This node's part in a cluster: its NATS connection, what it tells the other nodes
/// (presence), and what it answers them (drain requests).
///
/// NATS messages are handled on the connection's one event loop. A drain waits for the
/// device's frames to commit, bounded by `drainBound`, and never blocks that loop.
final class ClusterNode: ClusterLink, NodeDrain, Service, @unchecked Sendable {
    let configuration: ClusterConfiguration
    private let nats: NATSConnection
    private let group: MultiThreadedEventLoopGroup
    private let loop: EventLoop
    private let registry: DeviceRegistry
    private let logger: Logger
    /// Set once, before the node runs: the fan-out remote presence goes to.
    private let fanout = NIOLockedValueBox<LiveFanout?>(nil)
    /// How long this node takes at most to drain devices another node asked for.
    private let drainBound: TimeAmount

    init(configuration: ClusterConfiguration, registry: DeviceRegistry, logger: Logger) throws {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        drainBound = .nanoseconds(Int64(Self.nanos(configuration.drainTimeout)))
        nats = NATSConnection(
            configuration: try .init(url: configuration.natsURL, name: "hub-\(configuration.nodeID)"),
            eventLoopGroup: group, logger: logger)
    }

    /// Where presence from other nodes is delivered.
    func attach(_ fanout: LiveFanout) {
        self.fanout.withLockedValue { $0 = fanout }
    }

    /// Whether the node is connected to NATS: `/readyz` says not ready while it is not.
    var isConnected: Bool { nats.isConnected }

    func run() async throws {
        nats.subscribe(subject: ClusterSubjects.presence) { [self] message in
            guard let note = PresenceNote.decoded(from: message.payload) else { return }
            fanout.withLockedValue { $0 }?.publishRemotePresence(note.event, key: note.key, on: loop)
        }
        nats.subscribe(subject: ClusterSubjects.drain(node: configuration.nodeID)) { [self] message in
            answerDrain(message)
        }
        nats.onDisconnect { [logger] in logger.warning("cluster: NATS connection lost; reconnecting") }
        nats.onReconnect { [logger] in logger.info("cluster: NATS connection back") }
        nats.start()
        try? await gracefulShutdown()
        await nats.shutdown()
        try? await group.shutdownGracefully()
    }

    // MARK: - ClusterLink

    func presenceChanged(_ presence: Presence, key: Int32) {
        nats.publish(subject: ClusterSubjects.presence, payload: PresenceNote(key: key, event: presence).encoded())
    }

    // MARK: - NodeDrain (the asking side, on a claim thread)

    func drain(_ requests: [String: [DrainItem]], timeoutNanos: UInt64) {
        let waiting = DispatchGroup()
        for (node, items) in requests where ClusterConfiguration.isValidNodeID(node) && node != configuration.nodeID {
            guard let payload = try? JSONEncoder().encode(DrainRequest(devices: items)) else { continue }
            waiting.enter()
            nats.request(subject: ClusterSubjects.drain(node: node), payload: Array(payload), timeoutNanos: timeoutNanos) { [logger] result in
                if case .failure(let error) = result, (error as? NATSRequestError) != .noResponders {
                    logger.info("cluster: a drain went unanswered; the claim fences that node", metadata: ["node": "\(node)", "error": "\(error)"])
                }
                waiting.leave()
            }
        }
        _ = waiting.wait(timeout: .now() + .nanoseconds(Int(min(timeoutNanos, UInt64(Int.max)))))
    }

    // MARK: - Answering a drain (on the NATS loop)

    private func answerDrain(_ message: Message) {
        guard let replyTo = message.replyTo, let request = DrainRequest.decoded(from: message.payload) else { return }
        let reply = DrainCountdown(total: request.devices.count) { [nats] drained in
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
        loop.scheduleTask(in: drainBound) { reply.expire() }
    }

    private static func nanos(_ duration: Duration) -> UInt64 {
        UInt64(max(0, duration.components.seconds)) * 1_000_000_000 + UInt64(max(0, duration.components.attoseconds) / 1_000_000_000)
    }
}

/// Counts drained connections and answers once: when all are drained, or at the bound.
final class DrainCountdown: Sendable {
    private let state: NIOLockedValueBox<(left: Int, drained: Int, answered: Bool)>
    private let answer: @Sendable (Int) -> Void

    init(total: Int, answer: @escaping @Sendable (Int) -> Void) {
        state = NIOLockedValueBox((total, 0, false))
        self.answer = answer
        if total == 0 { finish() }
    }

    func done() { step(drained: 1) }
    func skip() { step(drained: 0) }

    /// The bound passed: answer with what is drained so far.
    func expire() { finish() }

    private func step(drained: Int) {
        let last = state.withLockedValue { state -> Bool in
            state.left -= 1
            state.drained += drained
            return state.left == 0
        }
        if last { finish() }
    }

    private func finish() {
        let drained: Int? = state.withLockedValue { state in
            guard !state.answered else { return nil }
            state.answered = true
            return state.drained
        }
        if let drained { answer(drained) }
    }
}
