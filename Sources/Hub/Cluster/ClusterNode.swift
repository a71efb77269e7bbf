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
/// (presence, interest, frames for their dashboards) and what it answers them (drains and
/// replay barriers). PostgreSQL stays the authority; NATS only carries messages.
///
/// Every NATS message is handled on the connection's one event loop (`loop`), and so is
/// the state in `LoopState`. Nothing here blocks that loop: a drain or a barrier answers
/// from a callback.
final class ClusterNode: ClusterLink, NodeDrain, CommandRelay, Service, @unchecked Sendable {
    let configuration: ClusterConfiguration
    let nats: NATSConnection
    let loop: EventLoop
    let registry: DeviceRegistry
    let queue: IngestQueue
    let clock: any HubClock
    let logger: Logger
    /// Where repairs read what was missed.
    let history: any TelemetryHistory
    /// Streams to repair after the NATS outage under way: from its start on, the frames
    /// other nodes send for them are held (`LiveFanout.beginRepair`).
    let repairTargets = NIOLockedValueBox<[Int32: (device: DeviceRecordRef, after: UInt64)]>([:])
    /// Repairs to run, one per NATS reconnect (at most one waits).
    private let repairs: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    /// Devices to repair after they came online in a newer session: at most one each
    /// (`LiveFanout` starts a device's next only after its `endRepair`), so at most one per
    /// device that dashboards here follow.
    let takeoverRepairs: (stream: AsyncStream<(DeviceRecordRef, UInt64)>, continuation: AsyncStream<(DeviceRecordRef, UInt64)>.Continuation)
    let interest = ClusterInterest()
    private let group: MultiThreadedEventLoopGroup
    /// Set once, before the node runs.
    let fanout = NIOLockedValueBox<LiveFanout?>(nil)
    /// Set once, before the node runs: where other nodes' command changes go.
    let commands = NIOLockedValueBox<CommandCenter?>(nil)
    /// Clears the ownership of a dead node's devices in PostgreSQL and ends its lease
    /// connection (`AdvisoryLease`).
    let clearOwner: @Sendable (String) -> Void
    /// This node's interest version: starts at the start time (µs), so it outgrows any
    /// version an earlier run of the same node id announced.
    let version: NIOLockedValueBox<UInt64>

    /// State of the NATS loop only.
    struct LoopState {
        /// When each other node was last heard (uptime ns), and whether it was taken as dead.
        var heard: [String: (at: UInt64, dead: Bool)] = [:]
        /// Devices online through another node: the event to undo if that node dies.
        var onlineElsewhere: [Int32: (node: String, event: Presence)] = [:]
        var announceScheduled = false
        var timers: [RepeatedTask] = []
    }
    let state: NIOLoopBoundBox<LoopState>

    init(
        configuration: ClusterConfiguration, registry: DeviceRegistry, queue: IngestQueue, history: any TelemetryHistory,
        clock: any HubClock, logger: Logger, clearOwner: @escaping @Sendable (String) -> Void
    ) throws {
        self.history = history
        repairs = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        takeoverRepairs = AsyncStream.makeStream(of: (DeviceRecordRef, UInt64).self)
        self.configuration = configuration
        self.registry = registry
        self.queue = queue
        self.clock = clock
        self.logger = logger
        self.clearOwner = clearOwner
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        state = NIOLoopBoundBox.makeBoxSendingValue(LoopState(), as: LoopState.self, eventLoop: loop)
        version = NIOLockedValueBox(UInt64(max(0, clock.wallMicros())))
        nats = NATSConnection(
            configuration: try .init(url: configuration.natsURL, name: "hub-\(configuration.nodeID)"),
            eventLoopGroup: group, logger: logger)
    }

    /// Where messages from other nodes are delivered.
    func attach(_ fanout: LiveFanout, commands: CommandCenter) {
        self.fanout.withLockedValue { $0 = fanout }
        self.commands.withLockedValue { $0 = commands }
    }

    var node: String { configuration.nodeID }

    /// Whether the node is connected to NATS: `/readyz` says not ready while it is not.
    var isConnected: Bool { nats.isConnected }

    func run() async throws {
        nats.subscribe(subject: ClusterSubjects.presence) { [self] in receivePresence($0) }
        nats.subscribe(subject: ClusterSubjects.interest) { [self] in receiveInterest($0) }
        nats.subscribe(subject: ClusterSubjects.drain(node: node)) { [self] in answerDrain($0) }
        nats.subscribe(subject: ClusterSubjects.frames(node: node)) { [self] in receiveFrames($0) }
        nats.subscribe(subject: ClusterSubjects.barrier(node: node)) { [self] in answerBarrier($0) }
        nats.subscribe(subject: ClusterSubjects.commands) { [self] message in
            guard let command = CommandNote.decoded(from: message.payload)?.command else { return }
            commands.withLockedValue { $0 }?.remoteChanged(command)
        }
        nats.onDisconnect { [self] in
            logger.warning("cluster: NATS connection lost; reconnecting")
            // From now on, what other nodes send for followed devices may have a gap: hold it.
            if let fanout = fanout.withLockedValue({ $0 }) {
                let targets = fanout.beginRepair(isLocal: { [registry] in registry.connection(id: $0) != nil })
                repairTargets.withLockedValue { known in
                    for target in targets where (known[target.device.key]?.after ?? .max) > target.after {
                        known[target.device.key] = target
                    }
                }
            }
            loop.scheduleTask(in: .nanoseconds(Int64(configuration.natsLossBound.nanoseconds))) { [self] in
                guard !nats.isConnected else { return }
                let connections = registry.connections
                logger.error("cluster: still no NATS; closing device connections so they move to other nodes",
                             metadata: ["connections": "\(connections.count)"])
                connections.forEach { $0.close(.unavailable) }
            }
        }
        nats.onReconnect { [self] in
            logger.info("cluster: NATS connection back")
            loop.execute { self.announce() }
            // Commands created elsewhere meanwhile were not heard: load them.
            commands.withLockedValue { $0 }?.reload()
            repairs.continuation.yield()
        }
        nats.start()
        try await loop.submit { self.startTimers() }.get()
        await withDiscardingTaskGroup { group in
            group.addTask { [self] in
                for await _ in repairs.stream { await repair() }
            }
            group.addTask { [self] in await repairTakeovers() }
            try? await gracefulShutdown()
            repairs.continuation.finish()
            takeoverRepairs.continuation.finish()
        }
        try? await loop.submit { self.state.value.timers.forEach { $0.cancel() } }.get()
        await nats.shutdown()
        try? await group.shutdownGracefully()
    }

    private func startTimers() {
        let beat = TimeAmount.nanoseconds(Int64(configuration.heartbeatInterval.nanoseconds))
        state.value.timers = [
            loop.scheduleRepeatedTask(initialDelay: .zero, delay: beat) { [self] _ in announce() },
            loop.scheduleRepeatedTask(initialDelay: beat, delay: .nanoseconds(beat.nanoseconds / 2)) { [self] _ in checkLiveness() },
        ]
    }

    // MARK: - ClusterLink

    func presenceChanged(_ presence: Presence, key: Int32) {
        nats.publish(subject: ClusterSubjects.presence, payload: PresenceNote(node: node, key: key, event: presence).encoded())
    }

    func commandChanged(_ command: Command) {
        guard let payload = try? JSONEncoder().encode(CommandNote(command)) else { return }
        nats.publish(subject: ClusterSubjects.commands, payload: Array(payload))
    }

    func interestedNodes(for device: String) -> [NodeInterest] {
        interest.nodes(for: device)
    }

    func forward(_ message: [UInt8], to node: String) {
        nats.publish(subject: ClusterSubjects.frames(node: node), payload: message)
    }

}
