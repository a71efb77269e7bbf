import Foundation
import HubClient
import Testing

extension IngestLiveTests {
    /// Makes a test device answer every command: ack, then a result (or only ack).
    func autoAnswer(_ device: TestDevice, ok: Bool = true, result: Bool = true) {
        let client = device.client
        device.log.observe { event in
            guard case .text(let text) = event,
                let message = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                message["type"] as? String == "command", let id = message["id"] as? String
            else { return }
            client.sendText(#"{"type":"command_ack","id":"\#(id)"}"#)
            if result {
                client.sendText(ok ? #"{"type":"command_result","id":"\#(id)","ok":true,"result":{"applied":true}}"#
                                   : #"{"type":"command_result","id":"\#(id)","ok":false,"error":"unsupported"}"#)
            }
        }
    }

    func commandsReceived(_ device: TestDevice) -> [[String: Any]] {
        device.texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "command" }
    }

    func status(_ hub: TestHub, _ id: String) async throws -> String? {
        (try await call(hub, "GET", "/api/v1/commands/\(id)").json as? [String: Any])?["status"] as? String
    }

    @Test("an online round trip: REST with wait_s answers 200 with the result; without an answer, 202 with the state so far")
    func commandRoundTrip() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("doer", token: try await hub.addDevice("doer"))
        autoAnswer(device)
        let answer = try await call(hub, "POST", "/api/v1/devices/doer/commands", body: #"{"name":"reboot","params":{"delay":1},"wait_s":5}"#)
        #expect(answer.status == 200)
        let command = try #require(answer.json as? [String: Any])
        #expect(command["status"] as? String == "succeeded")
        #expect((command["result"] as? [String: Bool]) == ["applied": true])
        #expect((command["params"] as? [String: Int]) == ["delay": 1])
        let received = commandsReceived(device)
        #expect(received.count == 1)
        #expect(received[0]["name"] as? String == "reboot")
        #expect(received[0]["expires_at_us"] is NSNumber)

        let silent = try await hub.connect("mute", token: try await hub.addDevice("mute"))
        autoAnswer(silent, result: false)
        let pending = try await call(hub, "POST", "/api/v1/devices/mute/commands", body: #"{"name":"x","wait_s":1}"#)
        #expect(pending.status == 202)
        #expect((pending.json as? [String: Any])?["status"] as? String == "delivered")
        let failing = try await hub.connect("failer", token: try await hub.addDevice("failer"))
        autoAnswer(failing, ok: false)
        let failed = try await call(hub, "POST", "/api/v1/devices/failer/commands", body: #"{"name":"x","wait_s":5}"#)
        #expect((failed.json as? [String: Any])?["status"] as? String == "failed")
        #expect((failed.json as? [String: Any])?["error"] as? String == "unsupported")
        #expect(try await call(hub, "POST", "/api/v1/devices/ghost/commands", body: #"{"name":"x"}"#).status == 404)
        #expect(try await call(hub, "POST", "/api/v1/devices/doer/commands", body: #"{"name":""}"#).status == 400)
        #expect(try await call(hub, "POST", "/api/v1/devices/doer/commands", body: #"{"name":"x","ttl_s":0}"#).status == 400)
        #expect(try await call(hub, "POST", "/api/v1/devices/doer/commands", body: #"{"name":"x","wait_s":600}"#).status == 400)
    }

    @Test("commands for an offline device queue, and are delivered in creation order on connect")
    func offlineQueue() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("sleeper")
        var ids: [String] = []
        for name in ["first", "second", "third"] {
            let created = try await call(hub, "POST", "/api/v1/devices/sleeper/commands", body: #"{"name":"\#(name)"}"#)
            #expect(created.status == 202)
            #expect((created.json as? [String: Any])?["status"] as? String == "queued")
            ids.append((created.json as! [String: Any])["id"] as! String)
        }
        let listed = try #require(try await call(hub, "GET", "/api/v1/devices/sleeper/commands?status=queued").json as? [[String: Any]])
        #expect(listed.map { $0["id"] as! String } == ids.reversed())
        let device = try await hub.connect("sleeper", token: token)
        try await eventually { commandsReceived(device).count == 3 }
        #expect(commandsReceived(device).map { $0["name"] as! String } == ["first", "second", "third"])
        try await eventually { (try? hub.count("SELECT count(*) FROM commands WHERE status = 'sent'")) == 3 }
        #expect(try await call(hub, "GET", "/api/v1/devices/sleeper/commands?status=bogus").status == 400)
    }

    @Test("a command whose time to live runs out is expired; a sent one without a result is timed out")
    func expiry() async throws {
        let hub = try await TestHub.start()
        _ = try await hub.addDevice("late-1")
        let queued = try #require(try await call(hub, "POST", "/api/v1/devices/late-1/commands", body: #"{"name":"x","ttl_s":1}"#).json as? [String: Any])
        let device = try await hub.connect("late-2", token: try await hub.addDevice("late-2"))
        autoAnswer(device, result: false)
        let sent = try #require(try await call(hub, "POST", "/api/v1/devices/late-2/commands", body: #"{"name":"x","ttl_s":1}"#).json as? [String: Any])
        try await eventually { try await status(hub, queued["id"] as! String) == "expired" }
        try await eventually { try await status(hub, sent["id"] as! String) == "timed_out" }
    }

    @Test("a command sent without a result is sent again after a reconnect")
    func redelivery() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("forgetful")
        let first = try await hub.connect("forgetful", token: token)
        let created = try #require(try await call(hub, "POST", "/api/v1/devices/forgetful/commands", body: #"{"name":"x"}"#).json as? [String: Any])
        try await eventually { commandsReceived(first).count == 1 }
        await first.client.abort()
        let second = try await hub.connect("forgetful", token: token)
        try await eventually { commandsReceived(second).count == 1 }
        #expect(commandsReceived(second)[0]["id"] as? String == created["id"] as? String)
    }

    @Test("a queued command can be cancelled once; anything else gets 409, an unknown id 404")
    func cancel() async throws {
        let hub = try await TestHub.start()
        _ = try await hub.addDevice("cancelled")
        let created = try #require(try await call(hub, "POST", "/api/v1/devices/cancelled/commands", body: #"{"name":"x"}"#).json as? [String: Any])
        let id = created["id"] as! String
        let cancelled = try await call(hub, "DELETE", "/api/v1/commands/\(id)")
        #expect(cancelled.status == 200)
        #expect((cancelled.json as? [String: Any])?["status"] as? String == "cancelled")
        #expect(try await call(hub, "DELETE", "/api/v1/commands/\(id)").status == 409)
        #expect(try await call(hub, "DELETE", "/api/v1/commands/00000000-0000-0000-0000-000000000000").status == 404)
        #expect(try await call(hub, "GET", "/api/v1/commands/not-a-uuid").status == 404)
    }

    @Test("queued commands survive a hub restart and are delivered after it")
    func commandsSurviveRestart() async throws {
        let first = try await TestHub.start()
        let token = try await first.addDevice("patient")
        for name in ["a", "b"] {
            #expect(try await call(first, "POST", "/api/v1/devices/patient/commands", body: #"{"name":"\#(name)"}"#).status == 202)
        }
        await first.stop()
        let second = try await TestHub.start(databaseURL: first.databaseURL)
        let device = try await second.connect("patient", token: token)
        try await eventually { commandsReceived(device).count == 2 }
        #expect(commandsReceived(device).map { $0["name"] as! String } == ["a", "b"])
    }

    @Test("a dashboard sees every transition with its ref; a device cannot answer for a command it did not get")
    func dashboardSeesTransitions() async throws {
        let hub = try await TestHub.start { $0.maxPendingCommands = 2 }
        let device = try await hub.connect("watched-cmd", token: try await hub.addDevice("watched-cmd"))
        autoAnswer(device)
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(#"{"type":"subscribe","id":"c","devices":["watched-cmd"]}"#, id: "c")
        dashboard.send(#"{"type":"command","ref":"r1","device":"watched-cmd","name":"reboot","params":{}}"#)
        try await eventually { dashboard.messages(ofType: "command_status").count == 4 }
        let statuses = dashboard.messages(ofType: "command_status")
        #expect(statuses.map { $0["status"] as! String } == ["queued", "sent", "delivered", "succeeded"])
        #expect(statuses.allSatisfy { $0["ref"] as? String == "r1" })

        // Another device answering for that command changes nothing.
        let id = statuses[0]["id"] as! String
        let intruder = try await hub.connect("intruder", token: try await hub.addDevice("intruder"))
        _ = try await hub.addDevice("target")
        let other = try #require(try await call(hub, "POST", "/api/v1/devices/target/commands", body: #"{"name":"x"}"#).json as? [String: Any])
        let otherID = other["id"] as! String
        intruder.client.sendText(#"{"type":"command_result","id":"\#(otherID)","ok":true,"result":{}}"#)
        intruder.client.sendText(#"{"type":"command_ack","id":"\#(id)"}"#)
        intruder.client.sendText(#"{"type":"command_result","id":"00000000-0000-0000-0000-000000000000","ok":true}"#)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await status(hub, otherID) == "queued")
        #expect(try await status(hub, id) == "succeeded")
        #expect(!intruder.isClosed)

        // The pending bound: the target already has one queued; a second fits, a third gets 429.
        #expect(try await call(hub, "POST", "/api/v1/devices/target/commands", body: #"{"name":"y"}"#).status == 202)
        #expect(try await call(hub, "POST", "/api/v1/devices/target/commands", body: #"{"name":"z"}"#).status == 429)
    }
}
