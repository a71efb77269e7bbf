import Foundation
import HubClient
import HubProtocol
import Testing

extension IngestLiveTests {
    /// Streams `total` frames from a device in the background, paced, with a bounded window.
    func streamInBackground(_ device: TestDevice, total: UInt64) -> Task<Void, Error> {
        Task {
            var seq: UInt64 = 0
            while seq < total {
                for _ in 0..<10 where seq < total {
                    seq += 1
                    device.client.sendBinary(sampleFrame(seq: seq, count: 2).encoded(), flush: false)
                }
                device.client.flush()
                try await Task.sleep(for: .milliseconds(2))
                while seq - device.highestAck > 500 { try await Task.sleep(for: .milliseconds(2)) }
            }
            try await device.waitForAck(total)
        }
    }

    func seqs(_ dashboard: TestDashboard, sub: String) -> [UInt64] {
        dashboard.messages(ofType: "telemetry").filter { $0["sub"] as? String == sub }.map { ($0["seq"] as! NSNumber).uint64Value }
    }

    @Test("replay by since_us while the device keeps streaming: no gap and no repeat")
    func replaySinceWhileStreaming() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("replayed", token: try await hub.addDevice("replayed"))
        let total: UInt64 = 3_000
        let streaming = streamInBackground(device, total: total)
        try await eventually { device.highestAck >= 800 }
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(#"{"type":"subscribe","id":"h","devices":["replayed"],"since_us":0}"#, id: "h")
        try await streaming.value
        try await eventually(timeout: .seconds(20)) { seqs(dashboard, sub: "h").count >= Int(total) }
        try await Task.sleep(for: .milliseconds(200))
        let received = seqs(dashboard, sub: "h")
        #expect(received.count == Int(total), "repeats or gaps: \(received.count) events for \(total) frames")
        #expect(Set(received) == Set(1...total))
        #expect(dashboard.messages(ofType: "replay_done").count == 1)
        // Replayed values are typed as they were sent.
        let first = dashboard.messages(ofType: "telemetry").first { ($0["seq"] as! NSNumber).intValue == 1 }!
        let readings = first["readings"] as! [[String: Any]]
        #expect(readings.map { $0["metric"] as! String } == ["temp", "rpm"])
        #expect((readings[0]["value"] as! NSNumber).doubleValue == 1.5)
        #expect((readings[1]["value"] as! NSNumber).int64Value == 10)
    }

    @Test("replay by resume sends every frame after the given seq, then live, with no repeat")
    func replayResume() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("resumed", token: try await hub.addDevice("resumed"))
        let total: UInt64 = 2_000
        let streaming = streamInBackground(device, total: total)
        try await eventually { device.highestAck >= 1_200 }
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(
            #"{"type":"subscribe","id":"r","devices":["resumed"],"resume":{"resumed":1000},"since_us":0}"#, id: "r")
        try await streaming.value
        try await eventually(timeout: .seconds(20)) { seqs(dashboard, sub: "r").count >= 1_000 }
        try await Task.sleep(for: .milliseconds(200))
        let received = seqs(dashboard, sub: "r")
        #expect(received.count == 1_000)
        #expect(Set(received) == Set(1_001...total))
    }

    @Test("max_rate_hz conflates per device and metric and still delivers the newest value")
    func maxRate() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("chatty", token: try await hub.addDevice("chatty"))
        let dashboard = try await hub.dashboard()
        try await dashboard.subscribe(#"{"type":"subscribe","id":"slow","devices":["chatty"],"max_rate_hz":5}"#, id: "slow")
        let start = ContinuousClock.now
        for seq in 1...200 {
            device.client.send(sampleFrame(seq: UInt64(seq), count: 2))
            try await Task.sleep(for: .milliseconds(5))
        }
        try await device.waitForAck(200)
        try await eventually { seqs(dashboard, sub: "slow").contains(200) }
        let elapsed = Double((ContinuousClock.now - start).components.seconds) + 1
        let received = seqs(dashboard, sub: "slow")
        #expect(received.count <= Int(elapsed * 5) + 2, "\(received.count) events in \(elapsed) s")
        #expect(received.count == Set(received).count)
    }
}
