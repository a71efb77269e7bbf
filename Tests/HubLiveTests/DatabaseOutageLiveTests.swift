import Foundation
import HubClient
import HubTestSupport
import Testing

extension IngestLiveTests {
    @Test("the database stopped and restarted mid-stream: every reading is stored exactly once")
    func databaseRestartMidStream() async throws {
        let cluster = try #require(TestCluster.current)
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("survivor")
        var device = try await hub.connect("survivor", token: token)
        var next: UInt64 = 1
        let total: UInt64 = 3000
        var stopped = false
        while next <= total {
            // Keep a window of at most 200 unacked frames, as a real device would.
            while next <= total && next - device.highestAck <= 200 {
                device.client.send(sampleFrame(seq: next))
                next += 1
            }
            if next > 1000 && !stopped {
                stopped = true
                try cluster.cluster.stop()
                let readiness = try await get(hub, "/readyz")
                #expect(readiness.status == 503, "\(readiness.body)")
                try await Task.sleep(for: .seconds(1))
                try cluster.cluster.start()
            }
            try await Task.sleep(for: .milliseconds(5))
            if device.isClosed {
                // Resume as the contract says: from welcome.last_seq.
                device = try await hub.connect("survivor", token: token)
                next = device.welcome.lastSeq + 1
            }
        }
        try await device.waitForAck(total)
        #expect(stopped)
        try await eventually { try await get(hub, "/readyz").status == 200 }
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'survivor'") == Int(total) * 3)
        #expect(try hub.count("SELECT count(DISTINCT (seq, metric)) FROM telemetry WHERE device_id = 'survivor'") == Int(total) * 3)
    }
}
