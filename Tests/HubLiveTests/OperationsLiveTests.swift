import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension IngestLiveTests {
    func get(_ hub: TestHub, _ path: String) async throws -> (status: Int, body: String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(hub.hub.port)\(path)")!)
        return ((response as! HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
    }

    @Test("/healthz and /readyz answer 200, /metrics counts accepted frames, unknown paths get 404")
    func operationsEndpoints() async throws {
        let hub = try await TestHub.start()
        #expect(try await get(hub, "/healthz").status == 200)
        #expect(try await get(hub, "/readyz") == (200, "ready\n"))
        let before = try await get(hub, "/metrics")
        let device = try await hub.connect("counted", token: try await hub.addDevice("counted"))
        for seq in 1...25 { device.client.send(sampleFrame(seq: UInt64(seq))) }
        try await device.waitForAck(25)
        let after = try await get(hub, "/metrics")
        #expect(after.status == 200)
        #expect(value(of: "hub_frames_accepted_total", in: after.body) - value(of: "hub_frames_accepted_total", in: before.body) == 25)
        #expect(value(of: "hub_readings_accepted_total", in: after.body) - value(of: "hub_readings_accepted_total", in: before.body) == 75)
        #expect(after.body.contains("hub_ingest_queue_depth"))
        #expect(after.body.contains("hub_dashboards_connected"))
        let page = try await get(hub, "/")
        #expect(page.status == 200)
        #expect(page.body.contains("<title>Telemetry hub</title>"))
        #expect(page.body.contains("/live?token="))
        #expect(!page.body.contains("http://") && !page.body.contains("https://"), "the page loads nothing from the network")
        let missing = try await get(hub, "/nothing-here")
        #expect(missing.status == 404)
        #expect(missing.body.contains(#""code":"not_found""#))
    }

    /// The value of an unlabelled counter in Prometheus text (0 if absent).
    func value(of name: String, in text: String) -> Double {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }
}
