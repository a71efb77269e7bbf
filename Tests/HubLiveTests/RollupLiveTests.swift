import Foundation
import HubIngest
import HubProtocol
import HubStorage
import Postgres
import Testing

extension IngestLiveTests {
    @Test("bucketed queries from the rollups equal those from raw readings, for every aggregate; rollups outlive raw retention")
    func rollupsMatchRaw() async throws {
        let hub = try await TestHub.start()
        defer { Task { await hub.stop() } }
        let device = try await hub.connect("rolled", token: try await hub.addDevice("rolled"))
        // 720 frames over 4 hours from 2026-11-29 00:00 UTC, 20 s apart, with values whose
        // sums are exact in binary floating point, so raw and rollup sums agree bit for bit.
        let start: Int64 = 1_764_374_400_000_000
        for seq in 1...720 as ClosedRange<UInt64> {
            var readings = [
                Reading(name: "temp", value: .f64(Double(seq % 40) * 0.25 - 3)),
                Reading(name: "count", offsetMicros: 5, value: .i64(Int64(seq) * 3)),
                Reading(name: "door", offsetMicros: 7, value: .bool(seq % 3 == 0)),
            ]
            if seq % 50 == 0 { readings.append(Reading(name: "fw", value: .string("1.\(seq / 50)"))) }
            device.client.send(TelemetryFrame(seq: seq, baseTime: start + Int64(seq) * 20_000_000, readings: readings))
        }
        try await device.waitForAck(720)
        let key = try #require(hub.hub.registry.record(id: "rolled")?.key)

        let executor = DatabaseExecutor(url: hub.databaseURL, name: "test-queries", threads: 1)
        defer { executor.shutdown() }
        let rollups = PostgresTelemetryQueries(executor: executor)
        let raw = PostgresTelemetryQueries(executor: executor, useRollups: false)
        let hour: Int64 = 3_600_000_000
        let ranges: [(Int64?, Int64?)] = [(nil, nil), (start, start + 4 * hour), (start + hour, start + 3 * hour)]
        func compare() async throws {
            for aggregate in Aggregate.allCases {
                for bucket in [60, 300, 3600, 7200] as [Int64] {
                    for (from, to) in ranges {
                        for metric in [nil, "temp", "fw"] as [String?] {
                            let a = try await rollups.buckets(deviceKey: key, metric: metric, fromMicros: from, toMicros: to, bucketSeconds: bucket, aggregate: aggregate, limit: 10_000)
                            let b = try await raw.buckets(deviceKey: key, metric: metric, fromMicros: from, toMicros: to, bucketSeconds: bucket, aggregate: aggregate, limit: 10_000)
                            let same = a == b
                            #expect(same, "\(aggregate) bucket_s=\(bucket) from=\(String(describing: from)) metric=\(metric ?? "*"): \(a.count) rows from rollups, \(b.count) raw; first difference \(String(describing: zip(a, b).first { $0 != $1 }))")
                            #expect(!b.isEmpty)
                        }
                    }
                }
            }
        }
        // Right after ingest (deltas maybe not folded yet), then once everything is folded.
        try await compare()
        try await eventually { try hub.count("SELECT count(*) FROM rollup_delta") == 0 }
        #expect(try hub.count("SELECT count(*) FROM rollup_1h WHERE device_key = \(key)") == 19)
        try await compare()

        // Raw readings gone (as retention would do): the hour buckets still answer over REST.
        _ = try hub.query("DELETE FROM reading WHERE device_key = $1", [String(key)])
        let answer = try await call(hub, "GET", "/api/v1/devices/rolled/telemetry?metric=count&bucket_s=3600&agg=count&from_us=\(start)&to_us=\(start + 4 * hour)")
        let rows = try #require(answer.json as? [[String: Any]])
        #expect(rows.compactMap { $0["value"] as? Int }.reduce(0, +) == 719)  // seq 720 is at 4 h exactly: outside
        let unaligned = try await call(hub, "GET", "/api/v1/devices/rolled/telemetry?metric=count&bucket_s=3600&agg=count&from_us=\(start + 1)&to_us=\(start + 4 * hour)")
        #expect((unaligned.json as? [[String: Any]])?.isEmpty == true)  // not aligned: raw rows, which are gone
    }
}
