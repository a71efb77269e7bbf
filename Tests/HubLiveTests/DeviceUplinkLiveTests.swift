import Foundation
import HubClient
import HubProtocol
import NIOPosix
import Testing

/// Kits outlive the hubs they talk to in these tests, so they get their own event loop.
private let kitGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

extension IngestLiveTests {
    func uplink(_ hub: TestHub, port: Int? = nil, _ id: String, token: String?, _ configure: (inout DeviceUplink.Configuration) -> Void = { _ in }) throws -> DeviceUplink {
        var configuration = DeviceUplink.Configuration(host: "127.0.0.1", port: port ?? hub.hub.port, deviceID: id, token: token)
        configuration.initialBackoff = .milliseconds(50)
        configuration.maxBackoff = .milliseconds(200)
        configure(&configuration)
        return try DeviceUplink(configuration, group: kitGroup)
    }

    func storedFrames(_ hub: TestHub, _ id: String) throws -> (rows: Int, seqs: Int, maxSeq: Int) {
        let row = try hub.query("SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM telemetry WHERE device_id = $1", [id]).rows[0]
        return (Int(row[0]!)!, Int(row[1]!)!, Int(row[2]!)!)
    }

    @Test("the Swift kit resumes across a hub restart: every frame is stored exactly once")
    func uplinkResumes() async throws {
        let first = try await TestHub.start()
        let port = first.hub.port
        let token = try await first.addDevice("swift-kit")
        let device = try uplink(first, "swift-kit", token: token)
        device.start()
        for index in 0..<300 {
            if index == 100 { await first.stop() }
            if index == 150 {
                let second = try await TestHub.start(databaseURL: first.databaseURL) { $0.server.port = port }
                for index in 150..<300 { try await device.send(sampleReadings(index)) }
                #expect(await device.waitAcked(timeout: .seconds(30)))
                #expect(device.connections == 2)
                #expect(try storedFrames(second, "swift-kit") == (900, 300, 300))
                await device.close()
                return
            }
            try await device.send(sampleReadings(index))
        }
    }

    @Test("Swift kit command handlers: ack, then the handler's result; an unknown name fails as unsupported")
    func uplinkCommands() async throws {
        let hub = try await TestHub.start()
        let device = try uplink(hub, "swift-cmd", token: try await hub.addDevice("swift-cmd"))
        device.onCommand("set_interval") { command in
            let seconds = command.params["seconds"]?.exactInteger(in: 0...Int64.max) ?? 0
            return seconds > 0 ? .ok(resultJSON: #"{"interval_s":\#(seconds)}"#) : .failed("seconds must be positive")
        }
        device.start()
        #expect(await device.waitConnected(timeout: .seconds(10)))

        let done = try await call(hub, "POST", "/api/v1/devices/swift-cmd/commands", body: #"{"name":"set_interval","params":{"seconds":5},"wait_s":10}"#)
        #expect(done.status == 200)
        let command = try #require(done.json as? [String: Any])
        #expect(command["status"] as? String == "succeeded")
        #expect((command["result"] as? [String: Any])?["interval_s"] as? Int == 5)

        let refused = try await call(hub, "POST", "/api/v1/devices/swift-cmd/commands", body: #"{"name":"set_interval","params":{},"wait_s":10}"#)
        #expect((refused.json as? [String: Any])?["error"] as? String == "seconds must be positive")
        let unknown = try await call(hub, "POST", "/api/v1/devices/swift-cmd/commands", body: #"{"name":"self_destruct","wait_s":10}"#)
        #expect((unknown.json as? [String: Any])?["status"] as? String == "failed")
        #expect((unknown.json as? [String: Any])?["error"] as? String == "unsupported")
        await device.close()
    }

    @Test("the Swift kit's buffer is bounded, and its spool carries unacked frames over a device restart")
    func uplinkSpool() async throws {
        let hub = try await TestHub.start()
        let port = hub.hub.port
        let token = try await hub.addDevice("swift-spool")
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: spool) }

        // First life: 10 frames, acked.
        let first = try uplink(hub, "swift-spool", token: token) { $0.spoolPath = spool }
        first.start()
        for index in 0..<10 { try await first.send(sampleReadings(index)) }
        #expect(await first.waitAcked(timeout: .seconds(10)))
        await first.close()
        await hub.stop()

        // Second life, hub down: the spool knows the sequence; 20 frames fill the buffer,
        // the 21st waits; the device dies without a close.
        let second = try uplink(hub, port: port, "swift-spool", token: token) {
            $0.spoolPath = spool
            $0.maxBufferedFrames = 20
        }
        second.start()
        for index in 10..<30 { try await second.send(sampleReadings(index)) }
        let blocked = Task { try await second.send(sampleReadings(30)) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(second.pending == 20)
        await second.close(timeout: .zero)
        await #expect(throws: DeviceUplink.Failure.closed) { try await blocked.value }

        // Third life: the spool still holds the 20; they reach the hub once it is back.
        let third = try uplink(hub, port: port, "swift-spool", token: token) { $0.spoolPath = spool }
        #expect(third.pending == 20)
        let again = try await TestHub.start(databaseURL: hub.databaseURL) { $0.server.port = port }
        third.start()
        #expect(await third.waitAcked(timeout: .seconds(30)))
        #expect(try storedFrames(again, "swift-spool") == (90, 30, 30))
        await third.close()
    }

    func sampleReadings(_ index: Int) -> [Reading] {
        [
            Reading(name: "temp", value: .f64(20 + Double(index % 50) / 10)),
            Reading(name: "count", value: .i64(Int64(index))),
            Reading(name: "door", value: .bool(index % 7 == 0)),
        ]
    }
}
