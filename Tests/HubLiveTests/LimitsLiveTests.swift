import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hub
import HubClient
import HubProtocol
import Logging
import NIOConcurrencyHelpers
import Testing

extension IngestLiveTests {
    func refusal(_ hub: TestHub, _ id: String, token: String?) async -> Int? {
        do {
            let device = try await hub.connect(id, token: token)
            await device.client.close()
            return nil
        } catch ClientFailure.refused(let status) {
            return status
        } catch {
            return -1
        }
    }

    @Test("limits: device connections past --max-devices and upgrades past --connect-rate get 503")
    func connectionLimits() async throws {
        let hub = try await TestHub.start { $0.server.maxDeviceConnections = 2 }
        let tokens = [try await hub.addDevice("cap-1"), try await hub.addDevice("cap-2"), try await hub.addDevice("cap-3")]
        let first = try await hub.connect("cap-1", token: tokens[0])
        let second = try await hub.connect("cap-2", token: tokens[1])
        #expect(await refusal(hub, "cap-3", token: tokens[2]) == 503)
        await second.client.close()
        try await eventually { await refusal(hub, "cap-3", token: tokens[2]) == nil }
        await first.client.close()

        let limited = try await TestHub.start { $0.server.connectsPerSecond = 3 }
        let token = try await limited.addDevice("rate-1")
        var statuses: [Int?] = []
        for _ in 0..<6 { statuses.append(await refusal(limited, "rate-1", token: token)) }
        #expect(statuses.prefix(3).allSatisfy { $0 == nil })
        #expect(statuses.contains(503))
    }

    @Test("limits: a device over --device-frame-rate is paced, not dropped: every frame is stored")
    func frameRateLimit() async throws {
        let hub = try await TestHub.start { $0.server.maxFramesPerSecondPerDevice = 100 }
        let device = try await hub.connect("paced", token: try await hub.addDevice("paced"))
        let started = ContinuousClock.now
        for seq in 1...300 as ClosedRange<UInt64> { device.client.send(sampleFrame(seq: seq, count: 1)) }
        try await device.waitForAck(300)
        let elapsed = ContinuousClock.now - started
        // 100 frames of burst, then 100 per second: the last acks come after about 2 s.
        #expect(elapsed > .milliseconds(1_500))
        #expect(try hub.count("SELECT count(DISTINCT seq) FROM telemetry WHERE device_id = 'paced'") == 300)
        #expect(!device.isClosed)
    }

    @Test("limits: a JSON message over --max-json-bytes gets too_large and the connection stays open")
    func jsonSizeLimit() async throws {
        let hub = try await TestHub.start { $0.server.maxJSONBytes = 200 }
        let dashboard = try await hub.dashboard()
        dashboard.send(#"{"type":"subscribe","id":"\#(String(repeating: "x", count: 300))","devices":["*"]}"#)
        try await eventually { dashboard.messages(ofType: "error").contains { $0["code"] as? String == "too_large" } }
        dashboard.send(#"{"type":"ping"}"#)
        try await eventually { !dashboard.messages(ofType: "pong").isEmpty }

        let device = try await hub.connect("chatty", token: try await hub.addDevice("chatty"))
        device.client.sendText(#"{"type":"command_ack","id":"\#(String(repeating: "y", count: 300))"}"#)
        try await eventually { device.texts.contains { $0.contains(#""too_large""#) } }
        #expect(!device.isClosed)
    }

    @Test("limits: headers over --max-header-bytes are refused; a foreign Origin gets 403 on the API, the hub's own passes")
    func headerAndOriginLimits() async throws {
        let hub = try await TestHub.start { $0.server.maxHeaderBytes = 2_048 }
        var big = URLRequest(url: URL(string: "http://127.0.0.1:\(hub.hub.port)/healthz")!)
        big.setValue(String(repeating: "z", count: 4_000), forHTTPHeaderField: "X-Padding")
        let status = (try? await URLSession.shared.data(for: big)).map { ($0.1 as! HTTPURLResponse).statusCode }
        #expect(status == nil || (400...431).contains(status!))

        func get(origin: String?) async throws -> Int {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(hub.hub.port)/api/v1/devices")!)
            request.setValue("Bearer \(TestHub.apiToken)", forHTTPHeaderField: "Authorization")
            if let origin { request.setValue(origin, forHTTPHeaderField: "Origin") }
            return (try await URLSession.shared.data(for: request).1 as! HTTPURLResponse).statusCode
        }
        #expect(try await get(origin: nil) == 200)
        #expect(try await get(origin: "http://127.0.0.1:\(hub.hub.port)") == 200)
        #expect(try await get(origin: "http://evil.example") == 403)

        let open = try await TestHub.start { $0.server.allowedOrigins = ["http://dash.example"] }
        var allowed = URLRequest(url: URL(string: "http://127.0.0.1:\(open.hub.port)/api/v1/devices")!)
        allowed.setValue("Bearer \(TestHub.apiToken)", forHTTPHeaderField: "Authorization")
        allowed.setValue("http://dash.example", forHTTPHeaderField: "Origin")
        #expect((try await URLSession.shared.data(for: allowed).1 as! HTTPURLResponse).statusCode == 200)
    }

    @Test("JSON logs: one object per line; connection lines carry device and connection ids; no token, no payload")
    func jsonLogs() async throws {
        let lines = NIOLockedValueBox<[String]>([])
        var logger = Logger(label: "hub") { JSONLogHandler(label: $0) { line in lines.withLockedValue { $0.append(line) } } }
        logger.logLevel = .debug
        let hub = try await TestHub.start(logger: logger)
        let token = try await hub.addDevice("logged")
        let device = try await hub.connect("logged", token: token, tokenInQuery: true)
        device.client.send(sampleFrame(seq: 1))
        device.client.sendBinary([0x01, 0x01, 0xde, 0xad])  // bad frame
        try await device.waitForAck(1)
        try await eventually { device.texts.contains { $0.contains("rejected") } }
        _ = try await call(hub, "GET", "/api/v1/devices")
        await device.client.close()
        await hub.stop()

        let objects = lines.withLockedValue { $0 }.map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!objects.isEmpty && objects.allSatisfy { $0 != nil })
        let connected = objects.compactMap { $0 }.filter { $0["message"] as? String == "device connected" }
        #expect(connected.count == 1)
        #expect(connected.first?["device"] as? String == "logged")
        #expect((connected.first?["connection"] as? String)?.isEmpty == false)
        let rejected = objects.compactMap { $0 }.filter { $0["message"] as? String == "rejected frames" }
        #expect(rejected.first?["connection"] != nil)
        let text = lines.withLockedValue { $0.joined() }
        #expect(!text.contains(token))
        #expect(!text.contains(TestHub.apiToken))
        #expect(!text.lowercased().contains("dead"))
    }
}
