import Foundation
import HubClient
import HubProtocol
import Testing

extension IngestLiveTests {
    @Test("/live needs an API token, in the header or as ?token=")
    func liveAuthentication() async throws {
        let hub = try await TestHub.start()
        await #expect(throws: ClientFailure.refused(status: 401)) { _ = try await hub.dashboard(token: nil) }
        await #expect(throws: ClientFailure.refused(status: 401)) { _ = try await hub.dashboard(token: "nope") }
        let dashboard = try await hub.dashboard(tokenInQuery: true)
        #expect(dashboard.client.hello.contains(#""type":"hello""#))
        _ = try await hub.dashboard(token: TestHub.readToken)
    }

    @Test("glob and metric filters deliver exactly the matching frames, each once")
    func globAndMetricFilters() async throws {
        let hub = try await TestHub.start()
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(#"{"type":"subscribe","id":"s1","devices":["line-*"],"metrics":["temp"]}"#, id: "s1")
        try await dashboard.subscribe(#"{"type":"subscribe","id":"s2","devices":["other"]}"#, id: "s2")
        var devices: [String: TestDevice] = [:]
        for id in ["line-1", "line-2", "other"] {
            devices[id] = try await hub.connect(id, token: try await hub.addDevice(id))
        }
        for seq in 1...20 {
            for device in devices.values { device.client.send(sampleFrame(seq: UInt64(seq), count: 4)) }
        }
        for device in devices.values { try await device.waitForAck(20) }
        try await eventually { dashboard.messages(ofType: "telemetry").count == 60 }
        try await Task.sleep(for: .milliseconds(100))
        let events = dashboard.messages(ofType: "telemetry")
        #expect(events.count == 60)
        let s1 = events.filter { $0["sub"] as? String == "s1" }
        #expect(Set(s1.map { $0["device"] as! String }) == ["line-1", "line-2"])
        #expect(Set(s1.map { "\($0["device"]!)/\($0["seq"]!)" }).count == 40)
        for event in s1 {
            let readings = event["readings"] as! [[String: Any]]
            #expect(readings.map { $0["metric"] as! String } == ["temp"])
            let seq = (event["seq"] as! NSNumber).uint64Value
            #expect((readings[0]["value"] as! NSNumber).doubleValue == Double(seq) + 0.5)
            #expect((readings[0]["ts_us"] as! NSNumber).int64Value == 1_763_769_600_000_000 + Int64(seq) * 1000)
        }
        let s2 = events.filter { $0["sub"] as? String == "s2" }
        #expect(s2.count == 20)
        #expect(s2.allSatisfy { ($0["readings"] as! [[String: Any]]).count == 4 })
        let values = (s2.first!["readings"] as! [[String: Any]]).map { $0["value"]! }
        // Booleans are JSON booleans on the live feed.
        let firstS2 = dashboard.log.texts.first { $0.contains(#""sub":"s2""#) } ?? ""
        #expect(firstS2.contains(#""value":false"#) || firstS2.contains(#""value":true"#))
        #expect(values[3] as? String == "v1")
    }

    @Test("presence events carry increasing sessions, and a takeover shows the old session going offline first")
    func presence() async throws {
        let hub = try await TestHub.start()
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(#"{"type":"subscribe","id":"p","devices":["watched"]}"#, id: "p")
        let token = try await hub.addDevice("watched")
        let first = try await hub.connect("watched", token: token)
        let second = try await hub.connect("watched", token: token)
        _ = try await first.waitForClose()
        await second.client.close()
        try await eventually { dashboard.messages(ofType: "presence").count == 4 }
        let presence = dashboard.messages(ofType: "presence")
        let steps = presence.map { "\($0["online"] as! Bool ? "on" : "off")-\($0["session"]!)" }
        #expect(steps == ["on-1", "off-1", "on-2", "off-2"])
        #expect(presence[0]["connection"] as? String == first.welcome.connection)
        #expect(presence[2]["connection"] as? String == second.welcome.connection)
        #expect((presence[0]["remote"] as? String)?.hasPrefix("127.0.0.1:") == true)
    }

    @Test("bad input gets an error and the connection stays open; a read-only token cannot send commands")
    func badLiveInput() async throws {
        let hub = try await TestHub.start { $0.server.maxSubscriptionsPerDashboard = 2 }
        let dashboard = try await hub.dashboard(token: TestHub.readToken)
        dashboard.send("{oops")
        dashboard.send(#"{"type":"dance"}"#)
        dashboard.send(#"{"type":"subscribe","id":"g","devices":["bad glob!"]}"#)
        dashboard.send(#"{"type":"command","ref":"r1","device":"x","name":"reboot","params":{}}"#)
        try await dashboard.subscribe(#"{"type":"subscribe","id":"a","devices":["*"]}"#, id: "a")
        try await dashboard.subscribe(#"{"type":"subscribe","id":"b","devices":["*"]}"#, id: "b")
        dashboard.send(#"{"type":"subscribe","id":"c","devices":["*"]}"#)
        dashboard.send(#"{"type":"ping"}"#)
        try await eventually { dashboard.messages(ofType: "pong").count == 1 }
        let codes = dashboard.messages(ofType: "error").map { $0["code"] as! String }
        #expect(codes == ["bad_json", "unknown_type", "bad_glob", "forbidden", "too_many_subscriptions"])
        #expect(!dashboard.log.isClosed)
    }

    @Test("a dashboard that stops reading does not slow ingest, and later gets lagged")
    func slowDashboard() async throws {
        let hub = try await TestHub.start { $0.server.maxDashboardQueueBytes = 32 * 1024 }
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(#"{"type":"subscribe","id":"all","devices":["*"]}"#, id: "all")
        try await dashboard.client.setReading(false)
        let device = try await hub.connect("fast", token: try await hub.addDevice("fast"))
        let start = ContinuousClock.now
        var seq: UInt64 = 0
        while seq < 20_000 {
            seq += 1
            device.client.sendBinary(sampleFrame(seq: seq, count: 4).encoded(), flush: seq % 100 == 0)
            if seq % 2_000 == 0 { try await device.waitForAck(seq - 1_000) }
        }
        device.client.flush()
        try await device.waitForAck(20_000)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(30), "ingest stalled behind a dashboard that does not read")
        try await dashboard.client.setReading(true)
        try await eventually(timeout: .seconds(20)) { !dashboard.messages(ofType: "lagged").isEmpty }
        let lagged = dashboard.messages(ofType: "lagged")[0]
        #expect(lagged["sub"] as? String == "all")
        #expect(((lagged["dropped"] as? NSNumber)?.intValue ?? 0) > 0)
    }
}
