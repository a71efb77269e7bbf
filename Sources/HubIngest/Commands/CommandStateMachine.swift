import HeapModule

/// Every state change of the commands that are not final, with no I/O: the shell
/// (`CommandCenter`) feeds it what happened, with the time, and performs the actions it
/// returns, in order.
///
/// It owns the commands in memory, each device's queue, the expiry heap, the `ref`s of
/// commands sent from `/live`, and the route to each device's current connection. Routes
/// are ordered by session: a `gone` for an older session, or a `ready` that arrives after
/// its own session's `gone`, never changes the route of a newer one.
///
/// Memory: one entry per command that is not final (at most `maxPendingPerDevice` per
/// device, each with its params of at most `maxParamsBytes`), plus one route per device
/// that has connected since start (a session number and a reference).
public struct CommandStateMachine: Sendable {
    public struct Limits: Sendable {
        /// Commands per device that are not final, counting those being inserted.
        public var maxPendingPerDevice: Int

        public init(maxPendingPerDevice: Int) {
            self.maxPendingPerDevice = maxPendingPerDevice
        }
    }

    /// What the shell does, in the order given.
    public enum Action {
        /// Write the command to the device over this connection.
        case send(Command, over: any DeviceConnection)
        /// Store this state of the command in the next batch; nothing waits for it.
        case save(Command)
        /// Store this final state; once committed, call `committed(finalOf:)`.
        case commitFinal(Command)
        /// The command changed: push it to dashboards (with its `ref`; also to the dashboard
        /// that asked, when `toOrigin`), count the state, and wake its waiters with it.
        case changed(Command, ref: String?, toOrigin: Bool)
        /// The final state is committed: wake the waiters with it.
        case wake(id: String, Command)
        /// A reply for a command not in memory: count it as ignored unless the store holds
        /// it as this device's (a late reply to a final command changes nothing).
        case checkReply(id: String, device: String)
        /// A reply for another device's command: count it as ignored.
        case ignoreReply
    }

    /// What `create` decides.
    public enum Creation: Equatable {
        /// Insert this row; report `inserted` or `insertFailed`.
        case insert(Command)
        case tooManyPending
    }

    private struct Expiry: Comparable {
        var atMicros: Int64
        var id: String
        static func < (a: Expiry, b: Expiry) -> Bool { (a.atMicros, a.id) < (b.atMicros, b.id) }
    }

    private struct Route {
        var session: Int64
        /// `nil` once that session's connection is gone.
        var connection: (any DeviceConnection)?
    }

    public let limits: Limits
    /// Commands that are not final, and final ones until that state is committed, by id.
    private var open: [String: Command] = [:]
    /// Ids of each device's commands that are not final, oldest first.
    private var queues: [String: [String]] = [:]
    /// New commands per device whose insert is not committed yet.
    private var creating: [String: Int] = [:]
    private var routes: [String: Route] = [:]
    private var refs: [String: String] = [:]
    private var expiries = Heap<Expiry>()

    public init(limits: Limits) {
        self.limits = limits
    }

    // MARK: - Reading

    /// The command as memory holds it: one that is not final, or final and not yet committed.
    public func command(id: String) -> Command? { open[id] }

    /// A device's commands in memory with this status, newest first.
    public func commands(device: String, status: CommandStatus, limit: Int) -> [Command] {
        Array((queues[device] ?? []).reversed().lazy.compactMap { open[$0] }.filter { $0.status == status }.prefix(limit))
    }

    /// The connection commands for `device` go to now.
    public func route(device: String) -> (any DeviceConnection)? { routes[device]?.connection }

    /// Whether the command is still in memory (not final, or its final state not committed).
    public func isOpen(_ id: String) -> Bool { open[id] != nil }

    // MARK: - Callers (REST and /live)

    /// A new command: decides whether the device may have another, and reserves its place.
    public mutating func create(_ command: Command) -> Creation {
        guard (queues[command.device]?.count ?? 0) + creating[command.device, default: 0] < limits.maxPendingPerDevice else {
            return .tooManyPending
        }
        creating[command.device, default: 0] += 1
        return .insert(command)
    }

    /// The insert failed: the place is free again.
    public mutating func insertFailed(_ command: Command) {
        release(command.device)
    }

    /// The insert is committed: the command is queued (the asking dashboard hears it first,
    /// with its `ref`), and sent at once if the device has a route.
    public mutating func inserted(_ command: Command, ref: String?, nowMicros: Int64) -> (Command, [Action]) {
        release(command.device)
        remember(command)
        if let ref { refs[command.id] = ref }
        var actions: [Action] = [.changed(command, ref: ref, toOrigin: true)]
        var current = command
        if let connection = routes[command.device]?.connection {
            current = send(command, over: connection, nowMicros: nowMicros, into: &actions)
        }
        return (current, actions)
    }

    /// Cancels a queued command. - Returns: it, cancelled, with its actions; `nil` if it is not queued.
    public mutating func cancel(id: String, nowMicros: Int64) -> (Command, [Action])? {
        guard var command = open[id], command.status == .queued else { return nil }
        command.status = .cancelled
        command.updatedMicros = nowMicros
        return (command, finish(command))
    }

    /// The commands that were not final when the hub stopped, from the store at start.
    /// Those already in memory are skipped; the rest go to devices that are already ready.
    public mutating func loaded(_ commands: [Command], nowMicros: Int64) -> [Action] {
        var actions: [Action] = []
        for command in commands where open[command.id] == nil {
            remember(command)
            if let connection = routes[command.device]?.connection {
                send(command, over: connection, nowMicros: nowMicros, into: &actions)
            }
        }
        return actions
    }

    // MARK: - Other nodes (cluster mode)

    /// Another node changed a command (created it, sent it, or committed its final state):
    /// this node learns it, tells its dashboards and waiters, and sends a queued command
    /// if its device is connected here. A change older than what is known is ignored; a
    /// final state is never overwritten, and a final one is forgotten (the other node
    /// committed it).
    public mutating func remoteChanged(_ command: Command, nowMicros: Int64) -> [Action] {
        if let known = open[command.id] {
            guard !known.status.isFinal, Self.rank(command.status) > Self.rank(known.status) else { return [] }
        } else if command.status.isFinal {
            // Settled here too (an expiry racing another node's), or never known: told already.
            return []
        }
        if command.status.isFinal {
            let ref = refs.removeValue(forKey: command.id)
            if open.removeValue(forKey: command.id) != nil {
                queues[command.device]?.removeAll { $0 == command.id }
                if queues[command.device]?.isEmpty == true { queues[command.device] = nil }
            }
            return [.changed(command, ref: ref, toOrigin: false), .wake(id: command.id, command)]
        }
        if open[command.id] == nil {
            remember(command)
        } else {
            open[command.id] = command
        }
        var actions: [Action] = [.changed(command, ref: refs[command.id], toOrigin: false)]
        if command.status == .queued, let connection = routes[command.device]?.connection {
            send(command, over: connection, nowMicros: nowMicros, into: &actions)
        }
        return actions
    }

    /// How far a command has come: states only move forward.
    private static func rank(_ status: CommandStatus) -> Int {
        switch status {
        case .queued: 0
        case .sent: 1
        case .delivered: 2
        default: 3
        }
    }

    // MARK: - Devices

    /// A connection had its welcome: it becomes the device's route, unless a newer session
    /// already is (or was). Queued commands go out and unanswered ones again, oldest first;
    /// those past their time to live wait for `expireDue`.
    public mutating func deviceReady(_ device: String, session: Int64, connection: any DeviceConnection, nowMicros: Int64) -> [Action] {
        if let route = routes[device], route.session >= session { return [] }
        routes[device] = Route(session: session, connection: connection)
        var actions: [Action] = []
        for id in queues[device] ?? [] {
            if let command = open[id], command.expiresMicros > nowMicros {
                send(command, over: connection, nowMicros: nowMicros, into: &actions)
            }
        }
        return actions
    }

    /// A connection ended. The route goes only if it is this session's (or older).
    public mutating func deviceGone(_ device: String, session: Int64) {
        if let route = routes[device], route.session > session { return }
        routes[device] = Route(session: session, connection: nil)
    }

    /// `command_ack` from a device.
    public mutating func acknowledged(id: String, by device: String, nowMicros: Int64) -> [Action] {
        apply(id: id, device: device, nowMicros: nowMicros) { command in
            guard command.status == .sent else { return false }
            command.status = .delivered
            return true
        }
    }

    /// `command_result` from a device.
    public mutating func finished(
        id: String, by device: String, ok: Bool, resultJSON: String?, error: String?, nowMicros: Int64
    ) -> [Action] {
        apply(id: id, device: device, nowMicros: nowMicros) { command in
            guard command.status == .sent || command.status == .delivered else { return false }
            command.status = ok ? .succeeded : .failed
            command.resultJSON = ok ? resultJSON : nil
            command.error = ok ? nil : (error ?? "failed")
            return true
        }
    }

    // MARK: - Time and storage

    /// Expires what is due: a queued command becomes `expired`, a sent or delivered one
    /// `timed_out`.
    ///
    /// A command whose device is connected here is always this node's to settle. One for
    /// a device that is not is settled only if `settlesAway(device)` says so (in a cluster:
    /// while this node holds the expiry lease and the device is connected to no other
    /// node); otherwise it is looked at again `recheckMicros` later, unless another node's
    /// final state has arrived by then.
    public mutating func expireDue(
        nowMicros: Int64, recheckMicros: Int64 = 1_000_000, settlesAway: (String) -> Bool = { _ in true }
    ) -> [Action] {
        var actions: [Action] = []
        var later: [Expiry] = []
        while let next = expiries.min, next.atMicros <= nowMicros {
            _ = expiries.removeMin()
            guard var command = open[next.id], !command.status.isFinal else { continue }
            guard routes[command.device]?.connection != nil || settlesAway(command.device) else {
                later.append(Expiry(atMicros: nowMicros + max(1, recheckMicros), id: next.id))
                continue
            }
            command.status = command.status == .queued ? .expired : .timedOut
            command.updatedMicros = nowMicros
            actions += finish(command)
        }
        later.forEach { expiries.insert($0) }
        return actions
    }

    /// A final state is committed: memory forgets the command and its waiters wake.
    public mutating func committed(finalOf command: Command) -> [Action] {
        guard open[command.id]?.status.isFinal == true else { return [] }
        open[command.id] = nil
        return [.wake(id: command.id, command)]
    }

    /// A final state was not committed because another one was stored first (another
    /// node settled the command): that one stands. Dashboards here were told this node's
    /// final state at once, so they are told the standing one too if it differs; waiters
    /// wake with it, and memory forgets the command.
    public mutating func settledElsewhere(_ stored: Command) -> [Action] {
        guard let mine = open[stored.id], mine.status.isFinal else { return [] }
        open[stored.id] = nil
        let differs = (mine.status, mine.resultJSON, mine.error) != (stored.status, stored.resultJSON, stored.error)
        return (differs ? [.changed(stored, ref: nil, toOrigin: false)] : []) + [.wake(id: stored.id, stored)]
    }

    // MARK: - Internals

    private mutating func release(_ device: String) {
        creating[device, default: 1] -= 1
        if creating[device] == 0 { creating[device] = nil }
    }

    private mutating func remember(_ command: Command) {
        open[command.id] = command
        queues[command.device, default: []].append(command.id)
        expiries.insert(Expiry(atMicros: command.expiresMicros, id: command.id))
    }

    /// A device's reply to its own command. `change` edits the command and tells whether
    /// its state allowed the reply; a repeat (a second ack, a result after the time to
    /// live) changes nothing.
    private mutating func apply(id: String, device: String, nowMicros: Int64, _ change: (inout Command) -> Bool) -> [Action] {
        guard var command = open[id] else { return [.checkReply(id: id, device: device)] }
        guard command.device == device else { return [.ignoreReply] }
        guard change(&command) else { return [] }
        command.updatedMicros = nowMicros
        if command.status.isFinal { return finish(command) }
        open[id] = command
        return [.save(command), .changed(command, ref: refs[id], toOrigin: false)]
    }

    /// Writes the command to the device, marking it sent if it was queued. Dashboards hear
    /// `sent` before the device can answer, so no later state overtakes it.
    @discardableResult
    private mutating func send(_ command: Command, over connection: any DeviceConnection, nowMicros: Int64, into actions: inout [Action]) -> Command {
        var command = command
        if command.status == .queued {
            command.status = .sent
            command.updatedMicros = nowMicros
            open[command.id] = command
            actions += [.save(command), .changed(command, ref: refs[command.id], toOrigin: false)]
        }
        actions.append(.send(command, over: connection))
        return command
    }

    /// Enters a final state: pushed at once and no longer pending; memory keeps it until
    /// the commit, so readers see it.
    private mutating func finish(_ command: Command) -> [Action] {
        open[command.id] = command
        queues[command.device]?.removeAll { $0 == command.id }
        if queues[command.device]?.isEmpty == true { queues[command.device] = nil }
        let ref = refs.removeValue(forKey: command.id)
        return [.changed(command, ref: ref, toOrigin: false), .commitFinal(command)]
    }
}
