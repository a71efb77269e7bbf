import Foundation
import HubIngest
import HubProtocol
import Logging
import Metrics
import ServiceLifecycle

/// The shell around `CommandStateMachine`: it feeds the machine what devices, dashboards
/// and REST callers do, with the time from its clock, and performs the actions it returns:
/// writes to devices, saves through the store's batching writer, pushes to dashboards,
/// wakes REST callers that wait.
///
/// Device connections and dashboards hand their events to `post`, which never waits; `run`
/// takes them one at a time, in the order posted, so a connection's `gone` always follows
/// its `ready` and an ack never overtakes its result. `run` also loads the commands that
/// were not final at the last stop and expires commands by time to live.
///
/// What a caller is told is committed: a new command before `create` returns, a
/// cancellation before `cancel` returns, a final state before a waiter wakes. Changes the
/// device causes (sent, delivered, a result) are pushed to dashboards at once and
/// committed within a batch; after a crash in between, the command is still `sent` and is
/// sent again (delivery is at least once).
public actor CommandCenter: Service {
    public struct Settings: Sendable {
        /// Time to live when the caller gives none.
        var defaultTTLSeconds = 300
        /// The longest time to live a caller may ask for.
        var maxTTLSeconds = 86_400
        /// Commands per device that are not final; more get 429.
        var maxPendingPerDevice = 1_000
        /// The longest `wait_s`.
        var maxWaitSeconds = 60
        /// The largest params object, as JSON text: what one command costs in memory and
        /// on the device's socket (at most `maxPendingPerDevice` of them wait per device).
        var maxParamsBytes = 16_384
        /// How often commands past their time to live are expired.
        var expiryInterval: Duration = .milliseconds(200)
        /// How long to wait before loading again while the database does not answer.
        var loadRetryInterval: Duration = .seconds(1)

        /// The defaults, with the server's per-device bound and JSON size limit.
        public init(configuration: ServerConfiguration) {
            maxPendingPerDevice = configuration.maxPendingCommandsPerDevice
            maxParamsBytes = configuration.maxJSONBytes
        }

    }

    /// A command sent from `/live`: created like a REST one, then `done` with the failure, if any.
    struct LiveOrder: Sendable {
        var device: String
        var name: String
        var paramsJSON: String
        var ttlSeconds: Int?
        var ref: String?
        var origin: DashboardHandler
        var done: @Sendable (Error?) -> Void
    }

    /// What connections hand over. Memory: each connection posts at most its `ready`, its
    /// `gone` and `maxRequestsInFlight` replies or orders before it waits for `applied`
    /// or `done`; each final state not yet applied posts one `committed`.
    enum Event: Sendable {
        case ready(device: String, session: Int64, connection: any DeviceConnection)
        case gone(device: String, session: Int64)
        case acknowledged(id: String, device: String, applied: @Sendable () -> Void)
        case finished(id: String, device: String, ok: Bool, resultJSON: String?, error: String?, applied: @Sendable () -> Void)
        case order(LiveOrder)
        /// A final state's commit (reported by the store's writer).
        case committed(Command)
        /// A final state not committed: the store already held this one (another node's).
        case settledElsewhere(Command)
        /// Another node changed a command (cluster mode).
        case remote(Command)
        /// Load the commands not final again (after a cluster reconnect: some may be new).
        case reload
    }

    let settings: Settings
    private let store: CommandStore
    private let fanout: LiveFanout
    /// The other nodes (cluster mode); `nil` on a single node.
    private let relay: (any CommandRelay)?
    /// Whether this node settles the expiry of a command whose device is not connected
    /// here (cluster mode: only the holder of the expiry lease, and only for a device
    /// connected to no other node); `nil` on a single node, which settles every one.
    private let settlesAway: (@Sendable (String) -> Bool)?
    private let clock: any HubClock
    private let logger: Logger
    private let events: AsyncStream<Event>
    private let inbox: AsyncStream<Event>.Continuation
    private var machine: CommandStateMachine
    /// Callers of `wait`, woken with the command after each change (`nil` at a deadline).
    private var waiters: [String: [CheckedContinuation<Command?, Never>]] = [:]
    private let ignoredReplies = Counter(label: "hub_command_replies_unknown_total")
    /// Changes into each state, `hub_commands_total{status="…"}`.
    private let transitions = Dictionary(uniqueKeysWithValues: CommandStatus.allCases.map {
        ($0, Counter(label: "hub_commands_total", dimensions: [("status", $0.rawValue)]))
    })

    public init(
        store: CommandStore, fanout: LiveFanout, settings: Settings = .init(configuration: ServerConfiguration()), clock: any HubClock,
        logger: Logger, relay: (any CommandRelay)? = nil, settlesAway: (@Sendable (String) -> Bool)? = nil
    ) {
        self.relay = relay
        self.settlesAway = settlesAway
        self.store = store
        self.fanout = fanout
        self.settings = settings
        self.clock = clock
        self.logger = logger
        machine = CommandStateMachine(limits: .init(maxPendingPerDevice: settings.maxPendingPerDevice))
        (events, inbox) = AsyncStream.makeStream(of: Event.self)
    }

    /// Hands an event to `run`; never waits. Events after the shutdown are dropped.
    nonisolated func post(_ event: Event) {
        inbox.yield(event)
    }

    /// Another node changed a command (cluster mode); applied in order with the rest.
    public nonisolated func remoteChanged(_ command: Command) {
        inbox.yield(.remote(command))
    }

    /// Loads the commands not final again, keeping those known (after a cluster reconnect).
    public nonisolated func reload() {
        inbox.yield(.reload)
    }

    /// Loads, takes events until the graceful shutdown, and expires commands meanwhile.
    /// At the end every waiter wakes (with `nil`) and memory is cleared.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.loadUntilDone() }
            group.addTask { await self.expireUntilCancelled() }
            // A plain loop over the stream (no per-event merge with the shutdown signal): the
            // graceful shutdown finishes the stream, so what was posted before it is still
            // applied and what comes after it is dropped.
            await withGracefulShutdownHandler {
                for await event in events {
                    switch event {
                    case .order(let order):
                        group.addTask { await self.create(order) }
                    case .reload:
                        group.addTask { await self.loadUntilDone() }
                    default:
                        for (id, device) in handle(event) {
                            group.addTask { await self.checkReply(id: id, device: device) }
                        }
                    }
                }
            } onGracefulShutdown: { [inbox] in
                inbox.finish()
            }
            group.cancelAll()
        }
        inbox.finish()
        // Cancelled instead: what was posted holds its connection (and so this center).
        for await _ in events {}
        // So do the routes; the commands in memory are stored, or are loaded at the next start.
        machine = CommandStateMachine(limits: machine.limits)
        for continuations in waiters.values { continuations.forEach { $0.resume(returning: nil) } }
        waiters = [:]
    }

    private func loadUntilDone() async {
        while !Task.isCancelled {
            do {
                let loaded = try await store.unfinished()
                apply(machine.loaded(loaded, nowMicros: clock.wallMicros()))
                return
            } catch {
                logger.error("could not load unfinished commands; retrying", metadata: ["error": "\(error)"])
            }
            try? await clock.sleep(for: settings.loadRetryInterval)
        }
    }

    private func expireUntilCancelled() async {
        while !Task.isCancelled {
            try? await clock.sleep(for: settings.expiryInterval)
            apply(machine.expireDue(nowMicros: clock.wallMicros(), settlesAway: settlesAway ?? { _ in true }))
        }
    }

    // MARK: - Callers (REST and /live)

    /// Stores a new command and sends it at once if the device is ready.
    func create(device: String, name: String, paramsJSON: String, ttlSeconds: Int?, ref: String? = nil, origin: DashboardHandler? = nil) async throws -> Command {
        let now = clock.wallMicros()
        let new = Command(
            id: UUID().uuidString.lowercased(), device: device, name: name, paramsJSON: paramsJSON, status: .queued,
            resultJSON: nil, error: nil, createdMicros: now, updatedMicros: now,
            expiresMicros: now + Int64(ttlSeconds ?? settings.defaultTTLSeconds) * 1_000_000)
        guard case .insert(let command) = machine.create(new) else { throw CommandStoreError.tooManyPending }
        do {
            try await store.save(command, isNew: true)
        } catch {
            machine.insertFailed(command)
            throw error
        }
        let (current, actions) = machine.inserted(command, ref: ref, nowMicros: clock.wallMicros())
        apply(actions, origin: origin)
        return current
    }

    private func create(_ order: LiveOrder) async {
        do {
            _ = try await create(
                device: order.device, name: order.name, paramsJSON: order.paramsJSON, ttlSeconds: order.ttlSeconds,
                ref: order.ref, origin: order.origin)
            order.done(nil)
        } catch {
            order.done(error)
        }
    }

    /// The command as this hub knows it now: from memory if it is not final, else stored.
    func command(id: String) async throws -> Command? {
        if let command = machine.command(id: id) { return command }
        return try await store.command(id: id)
    }

    /// A device's commands, newest first. The states that are not final come from memory.
    func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command] {
        if let status, !status.isFinal { return machine.commands(device: device, status: status, limit: limit) }
        let stored = try await store.commands(device: device, status: status, limit: limit).map { machine.command(id: $0.id) ?? $0 }
        return status.map { status in stored.filter { $0.status == status } } ?? stored
    }

    /// The connection commands for `device` go to now, if any.
    func route(device: String) -> (any DeviceConnection)? { machine.route(device: device) }

    /// Waits up to `seconds` for the command's final state to be committed.
    /// - Returns: the command as it is then.
    func wait(id: String, seconds: Int) async throws -> Command? {
        guard let first = machine.command(id: id) else { return try await store.command(id: id) }
        let limit = min(seconds, settings.maxWaitSeconds)
        let deadline = clock.uptimeNanos() + UInt64(max(0, limit)) * 1_000_000_000
        let clock = self.clock
        let waited = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // At the deadline only: cancelled (the command settled first), it returns at once.
                guard (try? await clock.sleep(for: .seconds(limit))) != nil else { return }
                await self.wake(id, with: nil)
            }
            var latest = first
            while machine.isOpen(id), clock.uptimeNanos() < deadline {
                latest = await withCheckedContinuation { waiters[id, default: []].append($0) } ?? machine.command(id: id) ?? latest
            }
            group.cancelAll()
            return machine.command(id: id) ?? latest
        }
        // Settled and forgotten while this waiter was being woken by an earlier change: the
        // final state is committed, so the store has it.
        if !waited.isFinal, !machine.isOpen(id) { return try await store.command(id: id) ?? waited }
        return waited
    }

    /// Cancels a queued command. - Returns: it, cancelled and committed; `nil` if it is not queued.
    func cancel(id: String) async throws -> Command? {
        guard let (command, actions) = machine.cancel(id: id, nowMicros: clock.wallMicros()) else { return nil }
        perform(actions)
        do {
            try await store.save(command, isNew: false)
        } catch CommandStoreError.alreadyFinal(let stored) {
            // Another node settled it first (sent it, and it finished or expired): not queued.
            perform(machine.settledElsewhere(stored))
            return nil
        } catch {}
        relay?.commandChanged(command)
        perform(machine.committed(finalOf: command))
        return command
    }

    // MARK: - Events

    /// Applies one event. - Returns: replies to look up in the store.
    private func handle(_ event: Event) -> [(id: String, device: String)] {
        let now = clock.wallMicros()
        switch event {
        case .ready(let device, let session, let connection):
            apply(machine.deviceReady(device, session: session, connection: connection, nowMicros: now))
        case .gone(let device, let session):
            machine.deviceGone(device, session: session)
        case .acknowledged(let id, let device, let applied):
            defer { applied() }
            return apply(machine.acknowledged(id: id, by: device, nowMicros: now))
        case .finished(let id, let device, let ok, let result, let error, let applied):
            defer { applied() }
            return apply(machine.finished(id: id, by: device, ok: ok, resultJSON: result, error: error, nowMicros: now))
        case .committed(let command):
            relay?.commandChanged(command)
            perform(machine.committed(finalOf: command))
        case .settledElsewhere(let stored):
            // The node that committed it told the others.
            perform(machine.settledElsewhere(stored))
        case .remote(let command):
            // What comes from another node is not relayed on (that node told every node);
            // what this node does next (sending it here) is.
            apply(machine.remoteChanged(command, nowMicros: now), notRelaying: command)
        case .order, .reload:
            break
        }
        return []
    }

    /// A reply for a command not in memory is ignored; it is counted unless it is this
    /// device's own command, already final.
    private func checkReply(id: String, device: String) async {
        if (try? await store.command(id: id))?.device != device { ignoredReplies.increment() }
    }

    // MARK: - Performing

    /// Performs the actions, and saves final states with their commits coming back to
    /// `run` as events. - Returns: the replies to look up.
    @discardableResult
    private func apply(
        _ actions: [CommandStateMachine.Action], origin: DashboardHandler? = nil, notRelaying heard: Command? = nil
    ) -> [(id: String, device: String)] {
        let lookups = perform(actions, origin: origin, notRelaying: heard)
        for case .commitFinal(let command) in actions {
            store.save(command, isNew: false) { [inbox] error in
                if case .alreadyFinal(let stored)? = error as? CommandStoreError {
                    inbox.yield(.settledElsewhere(stored))
                } else {
                    inbox.yield(.committed(command))
                }
            }
        }
        return lookups
    }

    /// Performs every action but the final commits, which the caller makes.
    /// - Returns: the replies to look up.
    @discardableResult
    private func perform(
        _ actions: [CommandStateMachine.Action], origin: DashboardHandler? = nil, notRelaying heard: Command? = nil
    ) -> [(id: String, device: String)] {
        var found: [(id: String, device: String)] = []
        for action in actions {
            switch action {
            case .send(let command, let connection):
                let message = DeviceCommand(
                    id: command.id, name: command.name, params: RawJSON(command.paramsJSON), expiresAtMicros: command.expiresMicros)
                connection.send(text: message.json)
            case .save(let command):
                store.save(command, isNew: false, done: nil)
            case .commitFinal:
                break
            case .changed(let command, let ref, let toOrigin):
                // Final states go to the other nodes once committed (`committed`).
                if !command.isFinal, command != heard { relay?.commandChanged(command) }
                fanout.publishNow(device: command.device, text: CommandJSON.status(command, ref: ref), alsoTo: toOrigin ? origin : nil)
                transitions[command.status]?.increment()
                wake(command.id, with: command)
            case .wake(let id, let command):
                wake(id, with: command)
            case .checkReply(let id, let device):
                found.append((id, device))
            case .ignoreReply:
                ignoredReplies.increment()
            }
        }
        return found
    }

    private func wake(_ id: String, with command: Command?) {
        waiters.removeValue(forKey: id)?.forEach { $0.resume(returning: command) }
    }
}
