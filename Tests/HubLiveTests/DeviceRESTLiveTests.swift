import Foundation
import HubClient
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension IngestLiveTests {
    /// A REST call. - Returns: the status and the parsed JSON body (if any).
    func call(
        _ hub: TestHub, _ method: String, _ path: String, token: String? = TestHub.apiToken, body: String? = nil
    ) async throws -> (status: Int, json: Any?) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(hub.hub.port)\(path)")!)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed))
    }

    @Test("REST device calls need the API token; a read-only token can read but not change")
    func restCredentials() async throws {
        let hub = try await TestHub.start()
        #expect(try await call(hub, "GET", "/api/v1/devices", token: nil).status == 401)
        #expect(try await call(hub, "GET", "/api/v1/devices", token: "wrong").status == 401)
        #expect(try await call(hub, "GET", "/api/v1/devices", token: TestHub.readToken).status == 200)
        let refused = try await call(hub, "POST", "/api/v1/devices", token: TestHub.readToken, body: #"{"id":"x"}"#)
        #expect(refused.status == 403)
        #expect(((refused.json as? [String: Any])?["error"] as? [String: Any])?["code"] as? String == "forbidden")
        #expect(try await call(hub, "GET", "/api/v1/nothing").status == 404)
        #expect(try await call(hub, "PUT", "/api/v1/devices").status == 405)
    }

    @Test("devices are created, listed, shown, changed, given new tokens and deleted over REST")
    func restDeviceLifecycle() async throws {
        let hub = try await TestHub.start()
        let created = try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"rest-1","labels":{"site":"a"}}"#)
        #expect(created.status == 201)
        let token = try #require((created.json as? [String: Any])?["token"] as? String)
        #expect(try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"rest-1"}"#).status == 409)
        #expect(try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"bad id"}"#).status == 400)
        #expect(try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"ok","labels":[1]}"#).status == 400)
        #expect(try await call(hub, "POST", "/api/v1/devices", body: "{nope").status == 400)

        let device = try await hub.connect("rest-1", token: token)
        for seq in 1...5 { device.client.send(sampleFrame(seq: UInt64(seq))) }
        try await device.waitForAck(5)

        let listed = try #require(try await call(hub, "GET", "/api/v1/devices?online=true&prefix=rest").json as? [[String: Any]])
        #expect(listed.count == 1)
        #expect(listed[0]["id"] as? String == "rest-1")
        #expect(listed[0]["online"] as? Bool == true)
        #expect((listed[0]["last_seq"] as? NSNumber)?.intValue == 5)
        #expect((listed[0]["session"] as? NSNumber)?.intValue == 1)
        #expect((listed[0]["remote"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect(listed[0]["last_seen_us"] is NSNumber)
        #expect((listed[0]["labels"] as? [String: String]) == ["site": "a"])
        #expect(try await call(hub, "GET", "/api/v1/devices?online=false").json as? [[String: Any]] != nil)
        #expect(try await call(hub, "GET", "/api/v1/devices/nobody").status == 404)
        #expect(try await call(hub, "GET", "/api/v1/devices/a%20b").status == 400)

        // Labels are replaced; disabling closes the connection with 4003 and refuses later connects with 403.
        let changed = try await call(hub, "PATCH", "/api/v1/devices/rest-1", body: #"{"enabled":false,"labels":{"site":"b"}}"#)
        #expect(changed.status == 200)
        #expect((changed.json as? [String: Any])?["enabled"] as? Bool == false)
        #expect(((changed.json as? [String: Any])?["labels"] as? [String: String]) == ["site": "b"])
        #expect(try await device.waitForClose() == 4003)
        await #expect(throws: ClientFailure.refused(status: 403)) { _ = try await hub.connect("rest-1", token: token) }
        #expect(try await call(hub, "PATCH", "/api/v1/devices/rest-1", body: #"{"enabled":true}"#).status == 200)

        // A new token: the old one stops working and the live connection closes with 4003.
        let again = try await hub.connect("rest-1", token: token)
        let rotated = try await call(hub, "POST", "/api/v1/devices/rest-1/token")
        #expect(rotated.status == 200)
        let newToken = try #require((rotated.json as? [String: Any])?["token"] as? String)
        #expect(try await again.waitForClose() == 4003)
        await #expect(throws: ClientFailure.refused(status: 401)) { _ = try await hub.connect("rest-1", token: token) }
        let third = try await hub.connect("rest-1", token: newToken)

        // Delete keeps the data and the mark; a re-created id continues from it.
        #expect(try await call(hub, "DELETE", "/api/v1/devices/rest-1").status == 204)
        #expect(try await third.waitForClose() == 4003)
        #expect(try await call(hub, "GET", "/api/v1/devices/rest-1").status == 404)
        #expect(try await call(hub, "DELETE", "/api/v1/devices/rest-1").status == 404)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'rest-1'") == 15)
        let recreated = try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"rest-1"}"#)
        let recreatedToken = try #require((recreated.json as? [String: Any])?["token"] as? String)
        let fourth = try await hub.connect("rest-1", token: recreatedToken)
        #expect(fourth.welcome.lastSeq == 5)
        await fourth.client.close()

        // Purge removes everything; a re-created id starts from 0.
        #expect(try await call(hub, "DELETE", "/api/v1/devices/rest-1?purge=true").status == 204)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'rest-1'") == 0)
        let fresh = try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"rest-1"}"#)
        let freshToken = try #require((fresh.json as? [String: Any])?["token"] as? String)
        #expect(try await hub.connect("rest-1", token: freshToken).welcome.lastSeq == 0)
    }
}
