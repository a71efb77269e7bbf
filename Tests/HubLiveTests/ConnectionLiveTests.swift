import Foundation
import HubClient
import HubProtocol
import Postgres
import Testing

extension IngestLiveTests {
    @Test("a bad id gets 400, a bad or missing token 401, a disabled device 403")
    func refusalsBeforeUpgrade() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("guarded")
        for id in ["..", "a%20b", String(repeating: "x", count: 65), "a/b"] {
            await #expect(throws: DeviceClient.Failure.refused(status: 400), "\(id)") {
                _ = try await hub.connect(id, token: token)
            }
        }
        await #expect(throws: DeviceClient.Failure.refused(status: 401)) { _ = try await hub.connect("guarded", token: "wrong") }
        await #expect(throws: DeviceClient.Failure.refused(status: 401)) { _ = try await hub.connect("guarded", token: nil) }
        await #expect(throws: DeviceClient.Failure.refused(status: 401)) { _ = try await hub.connect("unknown", token: token) }
        try hub.query("UPDATE device_registry SET enabled = false WHERE id = 'guarded'")
        try await eventually { hub.hub.registry.record(id: "guarded")?.enabled == false }
        await #expect(throws: DeviceClient.Failure.refused(status: 403)) { _ = try await hub.connect("guarded", token: token) }
        // A wrong token on a disabled device does not reveal that it exists.
        await #expect(throws: DeviceClient.Failure.refused(status: 401)) { _ = try await hub.connect("guarded", token: "wrong") }
    }

    @Test("an oversize frame closes the connection with 1009")
    func oversizeFrameCloses() async throws {
        let hub = try await TestHub.start { $0.server.maxFrameBytes = 1024 }
        let token = try await hub.addDevice("big")
        let device = try await hub.connect("big", token: token)
        #expect(device.welcome.maxFrameBytes == 1024)
        device.client.sendBinary([UInt8](repeating: 1, count: 2048))
        #expect(try await device.waitForClose() == 1009)
    }

    @Test("a second connection takes over: the first closes with 4001 after its frames commit")
    func takeover() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("twin")
        let old = try await hub.connect("twin", token: token)
        for seq in 1...100 { old.client.send(sampleFrame(seq: UInt64(seq))) }
        try await old.waitForAck(100)
        let new = try await hub.connect("twin", token: token)
        #expect(try await old.waitForClose() == 4001)
        #expect(new.welcome.session == old.welcome.session + 1)
        #expect(new.welcome.lastSeq == 100)
        new.client.send(sampleFrame(seq: 101))
        try await new.waitForAck(101)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'twin'") == 101 * 3)
    }

    @Test("a device added while the hub runs can connect, and a rotated token closes it with 4003")
    func registryFollowsTheDatabase() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("late")
        let device = try await hub.connect("late", token: token)
        _ = try DeviceStoreHelper.rotate("late", url: hub.databaseURL)
        #expect(try await device.waitForClose() == 4003)
        await #expect(throws: DeviceClient.Failure.refused(status: 401)) { _ = try await hub.connect("late", token: token) }
    }

    @Test("auto-provisioning registers an unknown device on first connect")
    func autoProvision() async throws {
        let hub = try await TestHub.start { $0.server.autoProvision = true }
        let device = try await hub.connect("fresh-1", token: nil)
        device.client.send(sampleFrame(seq: 1))
        try await device.waitForAck(1)
        #expect(try hub.count("SELECT count(*) FROM devices WHERE id = 'fresh-1'") == 1)
        let again = try await hub.connect("fresh-1", token: nil)
        #expect(again.welcome.lastSeq == 1)
        // A registered device with a token still needs it.
        let token = try await hub.addDevice("owned")
        await #expect(throws: DeviceClient.Failure.refused(status: 401)) { _ = try await hub.connect("owned", token: nil) }
        _ = try await hub.connect("owned", token: token)
    }

    @Test("a graceful stop acks everything received and closes devices with 1001")
    func gracefulStop() async throws {
        let hub = try await TestHub.start { $0.flushInterval = .milliseconds(500); $0.batchRows = 1_000_000 }
        let token = try await hub.addDevice("stopper")
        let device = try await hub.connect("stopper", token: token)
        for seq in 1...20 { device.client.send(sampleFrame(seq: UInt64(seq))) }
        try await eventually { hub.hub.registry.isOnline(id: "stopper") }
        try await Task.sleep(for: .milliseconds(100))
        await hub.stop()
        #expect(try await device.waitForClose() == 1001)
        #expect(device.highestAck == 20)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'stopper'") == 60)
    }
}

enum DeviceStoreHelper {
    static func rotate(_ id: String, url: String) throws -> String {
        try HubStorageAccess.store(url).rotateToken(id: id)
    }
}
