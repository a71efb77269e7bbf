import Foundation
import HeapModule
import HubIngest
import HubProtocol
import Logging
import Metrics

/// Routes commands to devices and tracks their state. The commands that are not final
/// live here, in memory; every change is stored through the store's batching writer. It
/// sends queued commands when a device is ready, re-sends unanswered ones on reconnect,
/// expires them by time to live, wakes REST callers that wait, and pushes every change to
/// dashboards.
///
/// What a caller is told is committed: a new command before `create` returns, a
/// cancellation before `cancel` returns, a final state before a waiter wakes. Changes the
/// device causes (sent, delivered, a result) are pushed to dashboards at once and
/// committed within a batch; after a crash in between, the command is still `sent` and is
/// sent again (delivery is at least once).
actor CommandCenter {
    struct Settings: Sendable {
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
    }

    let settings: Settings
    private let store: CommandStore
    private let fanout: LiveFanout
    private let logger: Logger
    private let ignoredReplies = Counter(label: "hub_command_replies_unknown_total")
    /// Changes into each state, `hub_commands_total{status="…"}`.
    private let transitions = Dictionary(uniqueKeysWithValues: CommandStatus.allCases.map {
        ($0, Counter(label: "hub_commands_total", dimensions: [("status", $0.rawValue)]))
    })
    /// Commands that are not final, and final ones until that state is committed, by id.
    private var open: [String: Command] = [:]
    /// Ids of each device's commands that are not final, oldest first.
    private var queues: [String: [String]] = [:]
    /// New commands per device whose insert is not committed yet (they count to the bound).
    private var creating: [String: Int] = [:]
    /// Connections that have had their welcome, by device id.
    private var ready: [String: any DeviceConnection] = [:]
    /// `ref`s of commands sent from `/live`, until the command is final.
    private var refs: [String: String] = [:]
    /// Callers of `wait`, woken with the command after each change (`nil` at their deadline).
    private var waiters: [String: [CheckedContinuation<Command?, Never>]] = [:]
    private var expiries = Heap<Expiry>()
    private var timer: Task<Void, Never>?

    private struct Expiry: Comparable {
        var atMicros: Int64
        var id: String
        static func < (a: Expiry, b: Expiry) -> Bool { (a.atMicros, a.id) < (b.atMicros, b.id) }
    }

    init(store: CommandStore, fanout: LiveFanout, settings: Settings = Settings(), logger: Logger) {
        self.store = store
        self.fanout = fanout
        self.settings = settings
        self.logger = logger
    }

    /// Loads the commands that are not final and starts the expiry timer. While the
    /// database is unreachable, loading is retried every second.
    func start() async {
        let loaded = await load()
        timer = Task { [weak self] in
            var loaded = loaded
            var tick = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                tick += 1
                if !loaded, tick % 5 == 0 { loaded = await self?.load() ?? true }
                await self?.expireDue()
            }
        }
    }

    func stop() {
        timer?.cancel()
        for continuations in waiters.values { continuations.forEach { $0.resume(returning: nil) } }
        waiters = [:]
    }

    private func load() async -> Bool {
        do {
            for command in try await store.unfinished() where open[command.id] == nil {
                remember(command)
                if let connection = ready[command.device] { send(command, over: connection) }
            }
            return true
        } catch {
            logger.error("could not load unfinished commands; retrying", metadata: ["error": "\(error)"])
            return false
        }
    }

    // MARK: - Callers (REST and /live)

    /// Stores a new command and sends it at once if the device is ready.
    func create(device: String, name: String, paramsJSON: String, ttlSeconds: Int?, ref: String? = nil, origin: DashboardHandler? = nil) async throws -> Command {
        guard (queues[device]?.count ?? 0) + creating[device, default: 0] < settings.maxPendingPerDevice else {
            throw CommandStoreError.tooManyPending
        }
        let now = WallClock.nowMicros()
        var command = Command(
            id: UUID().uuidString.lowercased(), device: device, name: name, paramsJSON: paramsJSON, status: .queued,
            resultJSON: nil, error: nil, createdMicros: now, updatedMicros: now,
            expiresMicros: now + Int64(ttlSeconds ?? settings.defaultTTLSeconds) * 1_000_000)
        creating[device, default: 0] += 1
        defer {
            creating[device]! -= 1
            if creating[device] == 0 { creating[device] = nil }
        }
        try await store.save(command, isNew: true)
        remember(command)
        if let ref { refs[command.id] = ref }
        // The asking dashboard hears `queued` (with its ref) before any later change.
        publish(command, alsoTo: origin)
        transitions[.queued]?.increment()
        if let connection = ready[device] { command = send(command, over: connection) }
        return command
    }

    /// The command as this hub knows it now: from memory if it is not final, else stored.
    func command(id: String) async throws -> Command? {
        if let command = open[id] { return command }
        return try await store.command(id: id)
    }

    /// A device's commands, newest first. The states that are not final come from memory.
    func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command] {
        if let status, !status.isFinal {
            return (queues[device] ?? []).reversed().compactMap { open[$0] }.filter { $0.status == status }.prefix(limit).map { $0 }
        }
        let stored = try await store.commands(device: device, status: status, limit: limit).map { open[$0.id] ?? $0 }
        return status.map { status in stored.filter { $0.status == status } } ?? stored
    }

    /// Waits up to `seconds` for the command's final state to be committed.
    /// - Returns: the command as it is then.
    func wait(id: String, seconds: Int) async throws -> Command? {
        guard var latest = open[id] else { return try await store.command(id: id) }
        let deadline = ContinuousClock.now + .seconds(min(seconds, settings.maxWaitSeconds))
        let alarm = Task { [weak self] in
            try? await Task.sleep(until: deadline)
            await self?.wake(id, with: nil)
        }
        defer { alarm.cancel() }
        while open[id] != nil, ContinuousClock.now < deadline {
            latest = await withCheckedContinuation { waiters[id, default: []].append($0) } ?? open[id] ?? latest
        }
        return open[id] ?? latest
    }

    /// Cancels a queued command. - Returns: it, cancelled; `nil` if it is not queued.
    func cancel(id: String) async throws -> Command? {
        guard var command = open[id], command.status == .queued else { return nil }
        command.status = .cancelled
        command.updatedMicros = WallClock.nowMicros()
        await finish(command).value
        return command
    }

    // MARK: - Devices

    /// After a welcome: sends queued commands and re-sends unanswered ones, oldest first.
    func deviceReady(_ device: String, connection: any DeviceConnection) {
        ready[device] = connection
        let now = WallClock.nowMicros()
        for id in queues[device] ?? [] {
            // Past their time to live: the timer expires them.
            if let command = open[id], command.expiresMicros > now { send(command, over: connection) }
        }
    }

    func deviceGone(_ device: String, connection: any DeviceConnection) {
        if ready[device] === connection { ready[device] = nil }
    }

    /// `command_ack` from a device.
    func acknowledged(id: String, by device: String) async {
        await apply(id: id, device: device) { command in
            guard command.status == .sent else { return false }
            command.status = .delivered
            return true
        }
    }

    /// `command_result` from a device.
    func finished(id: String, by device: String, ok: Bool, resultJSON: String?, error: String?) async {
        await apply(id: id, device: device) { command in
            guard command.status == .sent || command.status == .delivered else { return false }
            command.status = ok ? .succeeded : .failed
            command.resultJSON = ok ? resultJSON : nil
            command.error = ok ? nil : (error ?? "failed")
            return true
        }
    }

    /// Applies a device's reply to its own command. A reply for an unknown command or for
    /// another device's is ignored and counted; a repeat (a second ack, a result after the
    /// time to live) changes nothing.
    /// `change` edits the command and tells whether its state allowed the reply.
    private func apply(id: String, device: String, _ change: (inout Command) -> Bool) async {
        guard var command = open[id] else {
            if (try? await store.command(id: id))?.device != device { ignoredReplies.increment() }
            return
        }
        guard command.device == device else {
            ignoredReplies.increment()
            return
        }
        guard change(&command) else { return }
        command.updatedMicros = WallClock.nowMicros()
        if command.isFinal {
            finish(command)
        } else {
            open[id] = command
            store.save(command, isNew: false, done: nil)
            changed(command)
        }
    }

    // MARK: - Internals

    private func remember(_ command: Command) {
        open[command.id] = command
        queues[command.device, default: []].append(command.id)
        expiries.insert(Expiry(atMicros: command.expiresMicros, id: command.id))
    }

    /// Writes the command to the device, marking it sent if it was queued.
    @discardableResult
    private func send(_ command: Command, over connection: any DeviceConnection) -> Command {
        var command = command
        connection.send(text: DeviceMessages.command(
            id: command.id, name: command.name, paramsJSON: command.paramsJSON, expiresAtMicros: command.expiresMicros))
        if command.status == .queued {
            command.status = .sent
            command.updatedMicros = WallClock.nowMicros()
            open[command.id] = command
            store.save(command, isNew: false, done: nil)
            changed(command)
        }
        return command
    }

    /// Enters a final state: pushed at once and no longer pending.
    /// - Returns: the commit, after which memory forgets the command and waiters wake.
    @discardableResult
    private func finish(_ command: Command) -> Task<Void, Never> {
        open[command.id] = command
        queues[command.device]?.removeAll { $0 == command.id }
        if queues[command.device]?.isEmpty == true { queues[command.device] = nil }
        changed(command)
        refs[command.id] = nil
        return Task {
            try? await store.save(command, isNew: false)
            open[command.id] = nil
            wake(command.id, with: command)
        }
    }

    private func expireDue() async {
        let now = WallClock.nowMicros()
        while let next = expiries.min, next.atMicros <= now {
            _ = expiries.removeMin()
            guard var command = open[next.id], !command.isFinal else { continue }
            command.status = command.status == .queued ? .expired : .timedOut
            command.updatedMicros = now
            finish(command)
        }
    }

    private func changed(_ command: Command) {
        publish(command, alsoTo: nil)
        transitions[command.status]?.increment()
        wake(command.id, with: command)
    }

    private func wake(_ id: String, with command: Command?) {
        waiters.removeValue(forKey: id)?.forEach { $0.resume(returning: command) }
    }

    private func publish(_ command: Command, alsoTo origin: DashboardHandler?) {
        fanout.publishNow(device: command.device, text: CommandJSON.status(command, ref: refs[command.id]), alsoTo: origin)
    }
}

extension Command {
    var isFinal: Bool { status.isFinal }
}
