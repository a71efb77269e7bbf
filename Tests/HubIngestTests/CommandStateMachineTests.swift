import HubIngest
import Testing

/// A device connection that records nothing: the machine only routes to it.
private final class Connection: DeviceConnection {
    let connectionID: String
    init(_ id: String) { connectionID = id }
    func committed(upTo seq: UInt64?, items: Int) {}
    func replace(whenDrained drained: @escaping @Sendable () -> Void) {}
    func close(_ reason: CloseReason) {}
    func send(text: String) {}
}

/// Actions as short lines, so a test reads as the sequence a shell performs.
private func lines(_ actions: [CommandStateMachine.Action]) -> [String] {
    actions.map { action in
        switch action {
        case .send(let command, let connection): "send \(command.id) \(command.status.rawValue) over \(connection.connectionID)"
        case .save(let command): "save \(command.id) \(command.status.rawValue)"
        case .commitFinal(let command): "commit \(command.id) \(command.status.rawValue)"
        case .changed(let command, let ref, let toOrigin):
            "changed \(command.id) \(command.status.rawValue)" + (ref.map { " ref \($0)" } ?? "") + (toOrigin ? " to origin" : "")
        case .wake(let id, let command): "wake \(id) \(command.status.rawValue)"
        case .checkReply(let id, let device): "check \(id) from \(device)"
        case .ignoreReply: "ignore"
        }
    }
}

private let second: Int64 = 1_000_000

private func command(_ id: String, device: String = "d1", status: CommandStatus = .queued, createdAt: Int64 = 0, ttl: Int64 = 60) -> Command {
    Command(
        id: id, device: device, name: "reboot", paramsJSON: "{}", status: status, resultJSON: nil, error: nil,
        createdMicros: createdAt, updatedMicros: createdAt, expiresMicros: createdAt + ttl * second)
}

/// Creates and inserts a command. - Returns: the actions of the insert.
private func insert(_ machine: inout CommandStateMachine, _ new: Command, ref: String? = nil, at now: Int64 = 0) -> [String] {
    guard case .insert(let accepted) = machine.create(new) else {
        Issue.record("refused \(new.id)")
        return []
    }
    return lines(machine.inserted(accepted, ref: ref, nowMicros: now).1)
}

@Suite("Command state machine")
struct CommandStateMachineTests {
    @Test("a new command is queued, told to its origin with its ref, and sent at once to a ready device")
    func createAndSend() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        #expect(insert(&machine, command("c1"), ref: "r1") == ["changed c1 queued ref r1 to origin"])
        #expect(machine.command(id: "c1")?.status == .queued)

        let a = Connection("a")
        #expect(lines(machine.deviceReady("d1", session: 1, connection: a, nowMicros: second)) == [
            "save c1 sent", "changed c1 sent ref r1", "send c1 sent over a",
        ])
        #expect(insert(&machine, command("c2"), at: 2 * second) == [
            "changed c2 queued to origin", "save c2 sent", "changed c2 sent", "send c2 sent over a",
        ])
        #expect(machine.command(id: "c2")?.updatedMicros == 2 * second)
    }

    @Test("cluster: a command another node created is learned and sent here to a ready device; later states move it forward, never back")
    func remoteCommands() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        let a = Connection("a")
        _ = machine.deviceReady("d1", session: 3, connection: a, nowMicros: 0)
        #expect(lines(machine.remoteChanged(command("c1"), nowMicros: second)) == [
            "changed c1 queued", "save c1 sent", "changed c1 sent", "send c1 sent over a",
        ])
        // The origin's own "queued" note arrives late, and a repeat of "sent": both older or equal.
        #expect(lines(machine.remoteChanged(command("c1"), nowMicros: second)).isEmpty)
        #expect(lines(machine.remoteChanged(command("c1", status: .sent), nowMicros: second)).isEmpty)
        #expect(machine.command(id: "c1")?.status == .sent)

        // A command for a device not here is only learned, and resent once the device connects.
        #expect(lines(machine.remoteChanged(command("c2", device: "d2", status: .sent), nowMicros: second)) == ["changed c2 sent"])
        #expect(lines(machine.deviceReady("d2", session: 1, connection: Connection("b"), nowMicros: 2 * second)) == ["send c2 sent over b"])
    }

    @Test("cluster: a final state from another node settles and forgets the command; it is never overwritten, and an unknown final is ignored")
    func remoteFinal() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = insert(&machine, command("c1"), ref: "r1")
        var done = command("c1", status: .succeeded)
        done.resultJSON = "{}"
        #expect(lines(machine.remoteChanged(done, nowMicros: second)) == ["changed c1 succeeded ref r1", "wake c1 succeeded"])
        #expect(!machine.isOpen("c1"))
        #expect(machine.commands(device: "d1", status: .queued, limit: 10).isEmpty)
        #expect(lines(machine.remoteChanged(command("c1", status: .expired), nowMicros: second)).isEmpty)
        #expect(lines(machine.remoteChanged(command("c9", status: .failed), nowMicros: second)).isEmpty)

        // Settled here first (expired by time to live): a later final from elsewhere changes nothing.
        _ = insert(&machine, command("c2", ttl: 1))
        #expect(lines(machine.expireDue(nowMicros: 2 * second)) == ["changed c2 expired", "commit c2 expired"])
        #expect(lines(machine.remoteChanged(command("c2", status: .succeeded), nowMicros: 2 * second)).isEmpty)
    }

    @Test("the bound per device counts inserts not yet committed; a failed insert frees its place")
    func pendingBound() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 2))
        guard case .insert(let first) = machine.create(command("c1")) else { Issue.record("refused"); return }
        guard case .insert(let second) = machine.create(command("c2")) else { Issue.record("refused"); return }
        #expect(machine.create(command("c3")) == .tooManyPending)
        #expect(machine.create(command("x1", device: "d2")) == .insert(command("x1", device: "d2")))
        machine.insertFailed(second)
        _ = machine.inserted(first, ref: nil, nowMicros: 0)
        #expect(machine.create(command("c4")) == .insert(command("c4")))
        #expect(machine.create(command("c5")) == .tooManyPending)
    }

    @Test("routes are ordered by session: a late gone of an older session, or a ready after its own gone, changes nothing")
    func routesBySession() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        let (old, new) = (Connection("old"), Connection("new"))
        _ = machine.deviceReady("d1", session: 1, connection: old, nowMicros: 0)
        _ = machine.deviceReady("d1", session: 2, connection: new, nowMicros: 0)
        machine.deviceGone("d1", session: 1)
        #expect(machine.route(device: "d1") === new)
        // The old session's ready, arriving last, does not take the route back.
        _ = machine.deviceReady("d1", session: 1, connection: old, nowMicros: 0)
        #expect(machine.route(device: "d1") === new)

        machine.deviceGone("d1", session: 3)
        #expect(machine.route(device: "d1") == nil)
        // Session 3's ready after its gone: that connection is dead, so it is not a route.
        #expect(lines(machine.deviceReady("d1", session: 3, connection: Connection("dead"), nowMicros: 0)).isEmpty)
        #expect(machine.route(device: "d1") == nil)
        _ = machine.deviceReady("d1", session: 4, connection: new, nowMicros: 0)
        #expect(machine.route(device: "d1") === new)
        machine.deviceGone("d1", session: 4)
        #expect(machine.route(device: "d1") == nil)
    }

    @Test("a command reaches only its device's current route")
    func routesPerDevice() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = machine.deviceReady("d2", session: 1, connection: Connection("other"), nowMicros: 0)
        #expect(insert(&machine, command("c1")) == ["changed c1 queued to origin"])
    }

    @Test("an ack moves sent to delivered once; a result finishes it: pushed, committed, then waiters wake and memory forgets it")
    func repliesToTheEnd() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = machine.deviceReady("d1", session: 1, connection: Connection("a"), nowMicros: 0)
        _ = insert(&machine, command("c1"), ref: "r1")
        #expect(lines(machine.acknowledged(id: "c1", by: "d1", nowMicros: second)) == ["save c1 delivered", "changed c1 delivered ref r1"])
        #expect(lines(machine.acknowledged(id: "c1", by: "d1", nowMicros: second)).isEmpty)

        #expect(lines(machine.finished(id: "c1", by: "d1", ok: true, resultJSON: "42", error: nil, nowMicros: 2 * second)) == [
            "changed c1 succeeded ref r1", "commit c1 succeeded",
        ])
        let final = machine.command(id: "c1")
        #expect(final?.resultJSON == "42")
        #expect(final?.updatedMicros == 2 * second)
        // Until the commit, memory still answers with the final state, and a repeat changes nothing.
        #expect(lines(machine.finished(id: "c1", by: "d1", ok: false, resultJSON: nil, error: "late", nowMicros: 3 * second)).isEmpty)
        #expect(machine.commands(device: "d1", status: .sent, limit: 10).isEmpty)
        #expect(lines(machine.committed(finalOf: final!)) == ["wake c1 succeeded"])
        #expect(machine.command(id: "c1") == nil)
        // After that, a reply is for a command memory no longer holds.
        #expect(lines(machine.acknowledged(id: "c1", by: "d1", nowMicros: 4 * second)) == ["check c1 from d1"])
    }

    @Test("a failed result keeps the device's error, or says \"failed\"")
    func failedResult() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = machine.deviceReady("d1", session: 1, connection: Connection("a"), nowMicros: 0)
        _ = insert(&machine, command("c1"))
        _ = insert(&machine, command("c2"))
        _ = machine.finished(id: "c1", by: "d1", ok: false, resultJSON: "1", error: "disk full", nowMicros: 0)
        _ = machine.finished(id: "c2", by: "d1", ok: false, resultJSON: nil, error: nil, nowMicros: 0)
        #expect(machine.command(id: "c1").map { [$0.status.rawValue, $0.error, $0.resultJSON] } == ["failed", "disk full", nil])
        #expect(machine.command(id: "c2")?.error == "failed")
    }

    @Test("a reply for another device's command is ignored; one for a command not in memory is looked up")
    func foreignReplies() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = machine.deviceReady("d1", session: 1, connection: Connection("a"), nowMicros: 0)
        _ = insert(&machine, command("c1"))
        #expect(lines(machine.acknowledged(id: "c1", by: "d2", nowMicros: 0)) == ["ignore"])
        #expect(lines(machine.finished(id: "c1", by: "d2", ok: true, resultJSON: nil, error: nil, nowMicros: 0)) == ["ignore"])
        #expect(machine.command(id: "c1")?.status == .sent)
        #expect(lines(machine.acknowledged(id: "nope", by: "d1", nowMicros: 0)) == ["check nope from d1"])
    }

    @Test("at its time to live a queued command expires and a sent one times out, not a moment before")
    func expiry() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = insert(&machine, command("queued", ttl: 10))
        _ = insert(&machine, command("sent", device: "d2", ttl: 20))
        _ = insert(&machine, command("answered", device: "d2", ttl: 5))
        _ = machine.deviceReady("d2", session: 1, connection: Connection("b"), nowMicros: second)
        _ = machine.finished(id: "answered", by: "d2", ok: true, resultJSON: nil, error: nil, nowMicros: 2 * second)

        #expect(lines(machine.expireDue(nowMicros: 10 * second - 1)).isEmpty)
        #expect(lines(machine.expireDue(nowMicros: 10 * second)) == ["changed queued expired", "commit queued expired"])
        #expect(lines(machine.expireDue(nowMicros: 19 * second)).isEmpty)
        #expect(lines(machine.expireDue(nowMicros: 25 * second)) == ["changed sent timed_out", "commit sent timed_out"])
        #expect(machine.command(id: "sent")?.updatedMicros == 25 * second)
        #expect(lines(machine.expireDue(nowMicros: 100 * second)).isEmpty)
    }

    @Test("cluster: a final state that lost to one stored first is replaced by it for dashboards and waiters, and forgotten")
    func settledElsewhere() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = insert(&machine, command("c1", ttl: 1))
        #expect(lines(machine.expireDue(nowMicros: 2 * second)) == ["changed c1 expired", "commit c1 expired"])
        var stored = command("c1", status: .succeeded)
        stored.resultJSON = "{}"
        #expect(lines(machine.settledElsewhere(stored)) == ["changed c1 succeeded", "wake c1 succeeded"])
        #expect(!machine.isOpen("c1"))
        #expect(machine.command(id: "c1") == nil)
        // The same final state stored (a batch retried after its commit): waiters wake, nothing is told twice.
        _ = insert(&machine, command("c2", ttl: 1))
        _ = machine.expireDue(nowMicros: 2 * second)
        var same = command("c2", status: .expired)
        same.updatedMicros = 2 * second
        #expect(lines(machine.settledElsewhere(same)) == ["wake c2 expired"])
        // Not open, or not final here: nothing.
        #expect(lines(machine.settledElsewhere(stored)).isEmpty)
        _ = insert(&machine, command("c3"))
        #expect(lines(machine.settledElsewhere(command("c3", status: .failed))).isEmpty)
        #expect(machine.isOpen("c3"))
    }

    @Test("in a cluster a device connected here has its commands expired here; others only while settlesAway says so, looked at again later")
    func expiryScope() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = insert(&machine, command("here", device: "local", ttl: 10))
        _ = insert(&machine, command("away", device: "remote", ttl: 10))
        _ = machine.deviceReady("local", session: 1, connection: Connection("a"), nowMicros: second)
        let nobody: (String) -> Bool = { _ in false }
        #expect(lines(machine.expireDue(nowMicros: 10 * second, recheckMicros: second, settlesAway: nobody)) == [
            "changed here timed_out", "commit here timed_out",
        ])
        // Not this node's: kept, and not looked at again before the recheck.
        #expect(machine.command(id: "away")?.status == .queued)
        var asked: [String] = []
        #expect(lines(machine.expireDue(nowMicros: 11 * second - 1, recheckMicros: second) { asked.append($0); return true }).isEmpty)
        #expect(asked.isEmpty)
        // Another node settles it meanwhile: nothing to do when the recheck comes.
        var settled = command("away", device: "remote", ttl: 10)
        settled.status = .expired
        #expect(lines(machine.remoteChanged(settled, nowMicros: 10 * second)) == ["changed away expired", "wake away expired"])
        #expect(lines(machine.expireDue(nowMicros: 11 * second, recheckMicros: second) { asked.append($0); return true }).isEmpty)
        #expect(asked.isEmpty)
        // This node becomes the one that settles: the next due command for an absent device expires here.
        _ = insert(&machine, command("later", device: "remote", createdAt: 20 * second, ttl: 10))
        #expect(lines(machine.expireDue(nowMicros: 30 * second, recheckMicros: second, settlesAway: nobody)).isEmpty)
        #expect(lines(machine.expireDue(nowMicros: 31 * second, recheckMicros: second) { asked.append($0); return true }) == [
            "changed later expired", "commit later expired",
        ])
        #expect(asked == ["remote"])
    }

    @Test("only a queued command can be cancelled")
    func cancel() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = insert(&machine, command("c1"), ref: "r")
        let cancelled = machine.cancel(id: "c1", nowMicros: 3 * second)
        #expect(cancelled.map { lines($0.1) } == ["changed c1 cancelled ref r", "commit c1 cancelled"])
        #expect(cancelled?.0.updatedMicros == 3 * second)
        #expect(machine.cancel(id: "c1", nowMicros: 3 * second) == nil)
        // Cancelled before its device came: nothing is sent.
        #expect(lines(machine.deviceReady("d1", session: 1, connection: Connection("a"), nowMicros: 4 * second)).isEmpty)
        _ = insert(&machine, command("c2"))
        #expect(machine.cancel(id: "c2", nowMicros: 0) == nil)
        #expect(machine.cancel(id: "unknown", nowMicros: 0) == nil)
    }

    @Test("a reconnect sends what is queued and again what is unanswered, oldest first, but nothing past its time to live")
    func reconnect() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = insert(&machine, command("old", ttl: 5))
        _ = machine.deviceReady("d1", session: 1, connection: Connection("a"), nowMicros: 0)
        _ = insert(&machine, command("unanswered", createdAt: 1 * second))
        machine.deviceGone("d1", session: 1)
        _ = insert(&machine, command("waiting", createdAt: 2 * second))
        #expect(lines(machine.deviceReady("d1", session: 2, connection: Connection("b"), nowMicros: 6 * second)) == [
            "send unanswered sent over b", "save waiting sent", "changed waiting sent", "send waiting sent over b",
        ])
    }

    @Test("commands loaded at start join memory once and go to devices already ready")
    func loadedAtStart() {
        var machine = CommandStateMachine(limits: .init(maxPendingPerDevice: 10))
        _ = machine.deviceReady("d1", session: 1, connection: Connection("a"), nowMicros: 0)
        _ = insert(&machine, command("fresh", device: "d3"))
        let stored = [command("q1"), command("s1", status: .sent), command("fresh", device: "d3"), command("other", device: "d2")]
        #expect(lines(machine.loaded(stored, nowMicros: second)) == [
            "save q1 sent", "changed q1 sent", "send q1 sent over a", "send s1 sent over a",
        ])
        #expect(machine.commands(device: "d3", status: .queued, limit: 10).map(\.id) == ["fresh"])
        #expect(machine.commands(device: "d1", status: .sent, limit: 10).map(\.id) == ["s1", "q1"])
        #expect(machine.commands(device: "d1", status: .sent, limit: 1).map(\.id) == ["s1"])
    }
}
