import Foundation
import HubProtocol
import Testing

extension IngestLiveTests {
    static let t0: Int64 = 1_763_769_600_000_000  // a whole minute

    /// seq 1...120, one per second from t0: temp = seq, rpm = 10·seq, door = even seq, fw = "v<seq>".
    func secondlyFrame(_ seq: UInt64) -> TelemetryFrame {
        TelemetryFrame(seq: seq, baseTime: Self.t0 + Int64(seq) * 1_000_000, readings: [
            Reading(name: "temp", value: .f64(Double(seq))),
            Reading(name: "rpm", value: .i64(Int64(seq) * 10)),
            Reading(name: "door", value: .bool(seq % 2 == 0)),
            Reading(name: "fw", value: .string("v\(seq)")),
        ])
    }

    @Test("telemetry over REST: raw ranges, aggregates per bucket checked against what was sent, latest, and bad parameters")
    func restTelemetry() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("queried", token: try await hub.addDevice("queried"))
        for seq in 1...120 { device.client.send(secondlyFrame(UInt64(seq))) }
        try await device.waitForAck(120)
        let base = "/api/v1/devices/queried"

        // Raw, half-open range, oldest first.
        let raw = try #require(try await call(hub, "GET", "\(base)/telemetry?metric=temp&from_us=\(Self.t0 + 10_000_000)&to_us=\(Self.t0 + 20_000_000)").json as? [[String: Any]])
        #expect(raw.map { ($0["seq"] as! NSNumber).intValue } == Array(10..<20))
        #expect(raw.map { ($0["value"] as! NSNumber).doubleValue } == (10..<20).map(Double.init))
        #expect((raw[0]["ts_us"] as! NSNumber).int64Value == Self.t0 + 10_000_000)
        let limited = try #require(try await call(hub, "GET", "\(base)/telemetry?limit=7").json as? [[String: Any]])
        #expect(limited.count == 7)
        let doors = try #require(try await call(hub, "GET", "\(base)/telemetry?metric=door&limit=2").json as? [[String: Any]])
        #expect(doors.map { ($0["value"] as! NSNumber).intValue } == [0, 1])

        // Buckets of 60 s: seq 1...59, 60...119, 120.
        func bucketValues(_ agg: String, _ metric: String = "temp") async throws -> [Double] {
            let rows = try #require(try await call(hub, "GET", "\(base)/telemetry?metric=\(metric)&bucket_s=60&agg=\(agg)").json as? [[String: Any]])
            #expect(rows.map { ($0["ts_us"] as! NSNumber).int64Value } == [Self.t0, Self.t0 + 60_000_000, Self.t0 + 120_000_000])
            return rows.map { ($0["value"] as! NSNumber).doubleValue }
        }
        #expect(try await bucketValues("avg") == [30, 89.5, 120])
        #expect(try await bucketValues("min") == [1, 60, 120])
        #expect(try await bucketValues("max") == [59, 119, 120])
        #expect(try await bucketValues("sum") == [1770, 5370, 120])
        #expect(try await bucketValues("count") == [59, 60, 1])
        #expect(try await bucketValues("last") == [59, 119, 120])
        #expect(try await bucketValues("sum", "rpm") == [17700, 53700, 1200])
        let lastFirmware = try #require(try await call(hub, "GET", "\(base)/telemetry?metric=fw&bucket_s=60&agg=last").json as? [[String: Any]])
        #expect(lastFirmware.map { $0["value"] as? String } == ["v59", "v119", "v120"])

        // Latest per metric.
        let latest = try #require(try await call(hub, "GET", "\(base)/latest").json as? [String: [String: Any]])
        #expect(Set(latest.keys) == ["temp", "rpm", "door", "fw"])
        #expect((latest["temp"]!["value"] as! NSNumber).doubleValue == 120)
        #expect((latest["temp"]!["ts_us"] as! NSNumber).int64Value == Self.t0 + 120_000_000)
        #expect((latest["door"]!["value"] as! NSNumber).intValue == 1)
        #expect(latest["fw"]!["value"] as? String == "v120")

        // Bad parameters name themselves.
        for (query, word) in [
            ("from_us=abc", "from_us"), ("to_us=1.5", "to_us"), ("from_us=10&to_us=5", "from_us"), ("limit=0", "limit"),
            ("limit=10001", "limit"), ("bucket_s=60&agg=median", "agg"), ("bucket_s=0", "bucket_s"), ("agg=avg", "agg"),
        ] {
            let answer = try await call(hub, "GET", "\(base)/telemetry?\(query)")
            #expect(answer.status == 400, "\(query)")
            let message = ((answer.json as? [String: Any])?["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains(word), "\(query): \(message)")
        }
        #expect(try await call(hub, "GET", "/api/v1/devices/ghost/telemetry").status == 404)
        #expect(try await call(hub, "GET", "/api/v1/devices/ghost/latest").status == 404)
    }
}
