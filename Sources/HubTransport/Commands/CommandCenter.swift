import Foundation
import HeapModule
import HubIngest
import HubProtocol
import Logging
import Metrics

/// Routes commands to devices and tracks their state: stores every change, sends queued
/// commands when a device is ready, re-sends unanswered ones on reconnect, expires them by
/// time to live, wakes REST callers that wait, and pushes every change to dashboards.
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
    /// Connections that have had their welcome, by device id.
    private var ready: [String: any DeviceConnection] = [:]
    /// `ref`s of commands sent from `/live`, until the command is final.
    private var refs: [String: String] = [:]
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// Commands someone waits for: how many wait, and how many changes happened meanwhile.
    private var watching: [String: (waiters: Int, changes: Int)] = [:]
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

    /// Loads the expiry times of unfinished commands and starts the timer.
    func start() async {
        do {
            for command in try await store.unfinished() { expiries.insert(Expiry(atMicros: command.expiresMicros, id: command.id)) }
        } catch {
            logger.error("could not load unfinished commands; their expiry waits for the next start", metadata: ["error": "\(error)"])
        }
        timer = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                await self?.expireDue()
            }
        }
    }

    func stop() {
        timer?.cancel()
        for continuations in waiters.values { continuations.forEach { $0.resume() } }
        waiters = [:]
    }

    // MARK: - Callers (REST and /live)

    /// Stores a new command and sends it at once if the device is ready.
    func create(device: String, name: String, paramsJSON: String, ttlSeconds: Int?, ref: String? = nil, origin: DashboardHandler? = nil) async throws -> Command {
        let ttl = ttlSeconds ?? settings.defaultTTLSeconds
        var command = try await store.create(
            device: device, name: name, paramsJSON: paramsJSON, ttlSeconds: ttl, maxPending: settings.maxPendingPerDevice)
        if let ref { refs[command.id] = ref }
        expiries.insert(Expiry(atMicros: command.expiresMicros, id: command.id))
        // The asking dashboard hears `queued` (with its ref) before any later change.
        publish(command, alsoTo: origin)
        transitions[.queued]?.increment()
        if let connection = ready[device] {
            command = try await send(command, over: connection) ?? command
        }
        return command
    }

    /// Waits up to `seconds` for the command to reach a final state. - Returns: it as it is then.
    func wait(id: String, seconds: Int) async throws -> Command? {
        let deadline = ContinuousClock.now + .seconds(min(seconds, settings.maxWaitSeconds))
        watching[id, default: (0, 0)].waiters += 1
        defer {
            watching[id]!.waiters -= 1
            if watching[id]!.waiters == 0 { watching[id] = nil }
        }
        while true {
            // A change while the store is read (the actor is reentrant) means: read again.
            let changesBefore = watching[id]!.changes
            guard let command = try await store.command(id: id) else { return nil }
            if command.isFinal || ContinuousClock.now >= deadline { return command }
            guard watching[id]!.changes == changesBefore else { continue }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                waiters[id, default: []].append(continuation)
                Task { [weak self] in
                    try? await Task.sleep(until: deadline)
                    await self?.wake(id)
                }
            }
        }
    }

    /// Cancels a queued command. - Returns: it, cancelled; `nil` if it is not queued.
    func cancel(id: String) async throws -> Command? {
        guard let command = try await store.transition(id: id, device: nil, from: [.queued], to: .cancelled, resultJSON: nil, error: nil) else {
            return nil
        }
        changed(command)
        return command
    }

    // MARK: - Devices

    /// After a welcome: sends queued commands and re-sends unanswered ones, oldest first.
    func deviceReady(_ device: String, connection: any DeviceConnection) async {
        ready[device] = connection
        do {
            for command in try await store.pending(device: device) {
                guard ready[device] === connection else { return }
                _ = try await send(command, over: connection)
            }
        } catch {
            logger.error("could not deliver pending commands", metadata: ["device": "\(device)", "error": "\(error)"])
        }
    }

    func deviceGone(_ device: String, connection: any DeviceConnection) {
        if ready[device] === connection { ready[device] = nil }
    }

    /// `command_ack` from a device.
    func acknowledged(id: String, by device: String) async {
        await apply(id: id, device: device, from: [.sent], to: .delivered, resultJSON: nil, error: nil, isAck: true)
    }

    /// `command_result` from a device.
    func finished(id: String, by device: String, ok: Bool, resultJSON: String?, error: String?) async {
        await apply(
            id: id, device: device, from: [.sent, .delivered], to: ok ? .succeeded : .failed,
            resultJSON: ok ? resultJSON : nil, error: ok ? nil : (error ?? "failed"), isAck: false)
    }

    private func apply(id: String, device: String, from: Set<CommandStatus>, to: CommandStatus, resultJSON: String?, error: String?, isAck: Bool) async {
        do {
            if let command = try await store.transition(id: id, device: device, from: from, to: to, resultJSON: resultJSON, error: error) {
                changed(command)
            } else if try await store.command(id: id)?.device != device {
                // Unknown, or another device's command: never applied.
                ignoredReplies.increment()
            }
            // Otherwise a repeat (a second ack, a result after a timeout): nothing changes.
        } catch {
            logger.error("could not record a command reply", metadata: ["device": "\(device)", "error": "\(error)"])
        }
    }

    // MARK: - Internals

    /// Marks the command sent (if it was queued), then writes it to the device. Marking
    /// first means a reply can never arrive for a command still stored as queued; if the
    /// write is lost with the connection, the command is re-sent on reconnect.
    private func send(_ command: Command, over connection: any DeviceConnection) async throws -> Command? {
        var sent: Command?
        if command.status == .queued {
            sent = try await store.transition(id: command.id, device: nil, from: [.queued], to: .sent, resultJSON: nil, error: nil)
            guard sent != nil else { return nil }  // cancelled or expired meanwhile
        }
        connection.send(text: DeviceMessages.command(
            id: command.id, name: command.name, paramsJSON: command.paramsJSON, expiresAtMicros: command.expiresMicros))
        if let sent { changed(sent) }
        return sent
    }

    private func expireDue() async {
        let now = WallClock.nowMicros()
        while let next = expiries.min, next.atMicros <= now {
            _ = expiries.removeMin()
            do {
                var command = try await store.transition(id: next.id, device: nil, from: [.queued], to: .expired, resultJSON: nil, error: nil)
                if command == nil {
                    command = try await store.transition(id: next.id, device: nil, from: [.sent, .delivered], to: .timedOut, resultJSON: nil, error: nil)
                }
                if let command { changed(command) }
            } catch {
                // Keep it for the next tick: the database may be back by then.
                expiries.insert(next)
                logger.warning("could not expire a command; retrying", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    private func changed(_ command: Command) {
        publish(command, alsoTo: nil)
        transitions[command.status]?.increment()
        if watching[command.id] != nil {
            watching[command.id]!.changes += 1
            wake(command.id)
        }
        if command.isFinal {
            refs[command.id] = nil
            wake(command.id)
        }
    }

    private func wake(_ id: String) {
        waiters.removeValue(forKey: id)?.forEach { $0.resume() }
    }

    private func publish(_ command: Command, alsoTo origin: DashboardHandler?) {
        fanout.publishNow(device: command.device, text: CommandJSON.status(command, ref: refs[command.id]), alsoTo: origin)
    }
}

extension Command {
    var isFinal: Bool { status.isFinal }
}
