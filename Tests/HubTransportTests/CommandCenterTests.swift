import Foundation
import HubIngest
import HubProtocol
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import HubTestSupport
import Testing

@testable import HubTransport

/// A device connection that keeps the texts sent to it.
private final class Device: DeviceConnection {
    let connectionID = "test-connection"
    let texts = NIOLockedValueBox<[String]>([])
    func committed(upTo seq: UInt64?, items: Int) {}
    func replace(whenDrained drained: @escaping @Sendable () -> Void) {}
    func close(_ reason: CloseReason) {}
    func send(text: String) { texts.withLockedValue { $0.append(text) } }
}

/// A command center on a `ManualClock`, running as a service for the body's length.
private func withCenter(_ body: (CommandCenter, MemoryStore, ManualClock) async throws -> Void) async throws {
    let (store, clock) = (MemoryStore(), ManualClock())
    let center = CommandCenter(store: store, fanout: LiveFanout(), clock: clock, logger: Logger(label: "test"))
    let group = ServiceGroup(configuration: .init(services: [.init(service: center)], logger: Logger(label: "test")))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        // The expiry timer is asleep on the clock before the test moves it.
        try await until("the timer sleeps") { clock.sleepers == 1 }
        do {
            try await body(center, store, clock)
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

/// A device connection for `id`, ready (the center routes commands to it).
private func connect(_ id: String, to center: CommandCenter) async throws -> Device {
    let device = Device()
    center.post(.ready(device: id, session: 1, connection: device))
    try await until("\(id) is ready") { await center.route(device: id) === device }
    return device
}

@Suite("Command center on a test clock")
struct CommandCenterTests {
    @Test("a queued command expires once the clock passes its time to live, and not before")
    func queuedExpires() async throws {
        try await withCenter { center, store, clock in
            let command = try await center.create(device: "d1", name: "reboot", paramsJSON: "{}", ttlSeconds: 1)
            clock.advance(by: .milliseconds(800))
            try await until("the timer sleeps again") { clock.sleepers == 1 }
            #expect(try await store.command(id: command.id)?.status == .queued)
            clock.advance(by: .milliseconds(400))
            try await until("the command expired") { try await store.command(id: command.id)?.status == .expired }
            #expect(try await center.command(id: command.id)?.updatedMicros == clock.wallMicros())
        }
    }

    @Test("a command sent to a ready device and never answered times out at its time to live")
    func sentTimesOut() async throws {
        try await withCenter { center, store, clock in
            let device = try await connect("d1", to: center)
            let command = try await center.create(device: "d1", name: "reboot", paramsJSON: "{}", ttlSeconds: 2)
            #expect(command.status == .sent)
            #expect(device.texts.withLockedValue { $0.count } == 1)
            clock.advance(by: .seconds(2))
            try await until("the command timed out") { try await store.command(id: command.id)?.status == .timedOut }
        }
    }

    @Test("a time-out that loses to a final state another node stored first: waiters get the stored one, and memory forgets it")
    func timeOutLosesToAStoredFinal() async throws {
        try await withCenter { center, store, clock in
            _ = try await connect("d1", to: center)
            let command = try await center.create(device: "d1", name: "reboot", paramsJSON: "{}", ttlSeconds: 2)
            // Another node's result, committed first (the device answered there).
            var elsewhere = command
            elsewhere.status = .succeeded
            elsewhere.resultJSON = "{\"ok\":1}"
            try await store.save(elsewhere, isNew: false)
            async let waited = center.wait(id: command.id, seconds: 30)
            try await until("the waiter waits") { clock.sleepers == 2 }
            clock.advance(by: .seconds(2))
            let got = await (try waited)
            #expect(got?.status == .succeeded)
            #expect(got?.resultJSON == "{\"ok\":1}")
            #expect(try await store.command(id: command.id)?.status == .succeeded)
            #expect(try await center.command(id: command.id)?.status == .succeeded)
        }
    }

    @Test("a late gone of the old session does not cut the new session off from its commands")
    func lateGone() async throws {
        try await withCenter { center, store, _ in
            let (old, new) = (Device(), Device())
            center.post(.ready(device: "d1", session: 1, connection: old))
            center.post(.ready(device: "d1", session: 2, connection: new))
            center.post(.gone(device: "d1", session: 1))
            try await until("the new session is the route") { await center.route(device: "d1") === new }
            let command = try await center.create(device: "d1", name: "reboot", paramsJSON: "{}", ttlSeconds: 60)
            #expect(command.status == .sent)
            #expect(new.texts.withLockedValue { $0.count } == 1)
            #expect(old.texts.withLockedValue { $0.isEmpty })
            #expect(try await store.command(id: command.id)?.status == .sent)
        }
    }

    @Test("wait_s ends on the clock: with the final state once it is committed, else with the state at the deadline")
    func waitEndsOnTheClock() async throws {
        try await withCenter { center, _, clock in
            _ = try await connect("d1", to: center)  // the route holds it
            let unanswered = try await center.create(device: "d1", name: "a", paramsJSON: "{}", ttlSeconds: 60)
            async let waited = center.wait(id: unanswered.id, seconds: 5)
            try await until("the waiter sleeps") { clock.sleepers == 2 }
            clock.advance(by: .seconds(5))
            #expect(try await waited?.status == .sent)

            let answered = try await center.create(device: "d1", name: "b", paramsJSON: "{}", ttlSeconds: 60)
            async let result = center.wait(id: answered.id, seconds: 5)
            try await until("the waiter sleeps") { clock.sleepers == 2 }
            center.post(.finished(id: answered.id, device: "d1", ok: true, resultJSON: "7", error: nil, applied: {}))
            let final = try await result
            #expect(final?.status == .succeeded)
            #expect(final?.resultJSON == "7")
        }
    }

    @Test("a waiter woken by one change while the command settles and is forgotten still answers with the final state")
    func waiterOvertaken() async throws {
        try await withCenter { center, _, clock in
            let device = try await connect("d1", to: center)
            for round in 0..<50 {
                let command = try await center.create(device: "d1", name: "c\(round)", paramsJSON: "{}", ttlSeconds: 60)
                async let result = center.wait(id: command.id, seconds: 5)
                try await until("the waiter sleeps") { clock.sleepers == 2 }
                // Ack, result and commit land back to back: the waiter woken by the ack runs
                // only after the command is final and forgotten.
                center.post(.acknowledged(id: command.id, device: "d1", applied: {}))
                center.post(.finished(id: command.id, device: "d1", ok: true, resultJSON: nil, error: nil, applied: {}))
                #expect(try await result?.status == .succeeded, "round \(round)")
            }
        }
    }
}
