import Foundation
import Hub
import HubClient
import HubProtocol
import HubStorage
import Postgres
import HubTestSupport
import Testing

/// Contract section 7 against a real hub and PostgreSQL: values that reach arithmetic or
/// storage, limits that survive restarts, and database time.
extension IngestLiveTests {
    @Test("sums that overflow answer null on every path; count, min, max and last still answer, and the rollups keep up")
    func overflowingSums() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("extreme", token: try await hub.addDevice("extreme"))
        let hour: Int64 = 3_600_000_000
        let base: Int64 = 1_763_769_600_000_000  // on an hour
        // Each after the ack of the one before: two minute deltas that overflow when folded.
        let values: [(UInt64, Int64, String, Double)] = [
            (1, base, "x", 1.7e308), (2, base + 1_000, "x", 1.7e308), (3, base + 2_000, "x", -1), (4, base, "y", 2.5), (5, base + 1, "y", 4),
            (6, base + hour, "big", 1e200), (7, base + hour + 1, "big", 2e200),
        ]
        for (seq, time, name, value) in values {
            device.client.send(TelemetryFrame(seq: seq, baseTime: time, readings: [Reading(name: name, value: .f64(value))]))
            try await device.waitForAck(seq)
        }
        try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        func bucket(_ query: String) async throws -> [String: Any]? {
            let answer = try await call(hub, "GET", "/api/v1/devices/extreme/telemetry?\(query)")
            #expect(answer.status == 200, "\(query)")
            return (answer.json as? [[String: Any]])?.first
        }
        let ranges = ["", "&from_us=\(base)&to_us=\(base + 2 * hour)", "&from_us=\(base - 1)"]  // rollups, and raw
        for width in [60, 3600, 86_400] {
            for range in ranges {
                let query = "metric=x&bucket_s=\(width)\(range)"
                #expect(try await bucket(query + "&agg=sum")?["value"] is NSNull, "\(query)")
                #expect(try await bucket(query + "&agg=avg")?["value"] is NSNull, "\(query)")
                #expect(try await bucket(query + "&agg=max")?["value"] as? Double == 1.7e308, "\(query)")
                #expect(try await bucket(query + "&agg=min")?["value"] as? Double == -1, "\(query)")
                #expect(try await bucket(query + "&agg=count")?["value"] as? Int == 3, "\(query)")
                #expect(try await bucket(query + "&agg=last")?["value"] as? Double == -1, "\(query)")
            }
        }
        // Other metrics sum as ever; 1e200 and 2e200 average without overflowing squares.
        #expect(try await bucket("metric=y&bucket_s=60&agg=sum")?["value"] as? Double == 6.5)
        for range in ranges {
            #expect(try await bucket("metric=big&bucket_s=3600&agg=avg\(range)")?["value"] as? Double == 1.5e200, "\(range)")
        }
        // The rollups took later readings in: a fold after the overflow still works.
        device.client.send(TelemetryFrame(seq: 8, baseTime: base + 3_000, readings: [Reading(name: "y", value: .f64(1))]))
        try await device.waitForAck(8)
        try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        #expect(try await bucket("metric=y&bucket_s=3600&agg=sum")?["value"] as? Double == 7.5)
        #expect(try hub.count("SELECT count(*) FROM rollup_delta_quarantine") == 0)
    }

    @Test("hub_add and hub_sum: exact at the edge of the double range, NaN past it, never an error")
    func safeSums() async throws {
        let hub = try await TestHub.start()
        let row = try hub.query(
            """
            SELECT hub_add(1.7e308, 1.7e308)::text, hub_add(8.98846567431157954e307, 8.98846567431157954e307)::text,
                hub_add(8.988465674311579e307, 8.988465674311579e307) = 1.7976931348623157e308,
                hub_add(-1.7e308, -1.7e308)::text, hub_add(1e308, -1e308)::text, hub_add(NULL, 2)::text, hub_add(2, NULL)::text,
                hub_add('Infinity', 1)::text, hub_add('NaN', 1)::text,
                (SELECT hub_sum(v)::text FROM unnest(ARRAY[1.7e308, 1.7e308, -1.7e308]::float8[]) v),
                (SELECT hub_sum(v)::text FROM unnest(ARRAY[1, 2.5, NULL]::float8[]) v)
            """
        ).rows[0]
        #expect(row == ["NaN", "NaN", "t", "NaN", "0", "2", "2", "NaN", "NaN", "NaN", "3.5"])
    }

    @Test("a command result the database cannot store is refused to its device and changes nothing; other commands go on")
    func unstorableCommandResult() async throws {
        let hub = try await TestHub.start()
        let bad = try await hub.connect("liar", token: try await hub.addDevice("liar"))
        let good = try await hub.connect("honest", token: try await hub.addDevice("honest"))
        autoAnswer(good)
        let created = try await call(hub, "POST", "/api/v1/devices/liar/commands", body: #"{"name":"reboot"}"#)
        let id = try #require((created.json as? [String: Any])?["id"] as? String)
        try await eventually { !commandsReceived(bad).isEmpty }
        let replies = [
            #"{"type":"command_result","id":"\#(id)","ok":false,"error":"x\u0000"}"#,
            #"{"type":"command_result","id":"\#(id)","ok":true,"result":{"k\u0000":1}}"#,
            #"{"type":"command_result","id":"\#(id)","ok":true,"result":[[[[{"a":["\u0000"]}]]]]}"#,
            #"{"type":"command_result","id":"\#(id)","ok":true,"result":\#(String(repeating: "[", count: 40) + String(repeating: "]", count: 40))}"#,
        ]
        for reply in replies { bad.client.sendText(reply) }
        try await eventually { bad.texts.filter { $0.contains(#""code":"bad_message""#) }.count == replies.count }
        #expect(try await status(hub, id) == "sent")
        // Meanwhile every other device's commands work, and creating them never says 503.
        for _ in 0..<3 {
            let answer = try await call(hub, "POST", "/api/v1/devices/honest/commands", body: #"{"name":"ping","wait_s":5}"#)
            #expect(answer.status == 200)
            #expect((answer.json as? [String: Any])?["status"] as? String == "succeeded")
        }
        // A good answer still settles the command.
        bad.client.sendText(#"{"type":"command_result","id":"\#(id)","ok":false,"error":"no"}"#)
        try await eventually { try await status(hub, id) == "failed" }
        // What a script sends is refused at the door with 400.
        for body in [
            #"{"name":"x","params":{"a":"\u0000"}}"#, #"{"name":"x\u0000"}"#, #"{"name":"x","params":{"\u0000":1}}"#,
            #"{"name":"x","ttl_s":1e300}"#, #"{"name":"x","ttl_s":true}"#, #"{"name":"x","wait_s":1.5}"#, #"{"name":"x","ttl_s":"5"}"#,
            #"{"name":"x","params":\#(String(repeating: "{\"a\":", count: 40))1\#(String(repeating: "}", count: 40))}"#,
        ] {
            #expect(try await call(hub, "POST", "/api/v1/devices/honest/commands", body: body).status == 400, "\(body)")
        }
        #expect(try await call(hub, "POST", "/api/v1/devices", body: #"{"id":"labelled","labels":{"site":"a\u0000"}}"#).status == 400)
        #expect(try await call(hub, "PATCH", "/api/v1/devices/honest", body: #"{"labels":{"site":"\u0000"}}"#).status == 400)
        #expect(try await call(hub, "GET", "/api/v1/devices?prefix=a%00").status == 400)
    }

    @Test("metric-name limits reject a frame whole with too_many_metrics, and hold across a restart")
    func metricNameLimits() async throws {
        let cluster = try #require(TestCluster.current)
        let url = try cluster.makeDatabase()
        func start() async throws -> TestHub {
            try await TestHub.start(databaseURL: url) {
                $0.metricLimits.perDevice = 3
                $0.metricLimits.total = 4
            }
        }
        let first = try await start()
        let token = try await first.addDevice("chatty")
        let other = try await first.addDevice("other")
        var device = try await first.connect("chatty", token: token)
        func send(_ device: TestDevice, _ seq: UInt64, _ names: [String]) async throws -> String? {
            let before = device.texts.count
            device.client.send(TelemetryFrame(seq: seq, baseTime: 1_763_769_600_000_000, readings: names.map { Reading(name: $0, value: .i64(1)) }))
            try await device.waitForAck(seq)
            return device.texts.dropFirst(before).first { $0.contains(#""type":"rejected""#) }
        }
        #expect(try await send(device, 1, ["a", "b"]) == nil)
        #expect(try await send(device, 2, ["c"]) == nil)
        let refused = try #require(try await send(device, 3, ["a", "d"]))
        #expect(refused.contains(#""seq":3"#) && refused.contains(#""reason":"too_many_metrics"#))
        #expect(try await send(device, 4, ["a", "b", "c"]) == nil)
        var second = try await first.connect("other", token: other)
        #expect(try await send(second, 1, ["e"]) == nil)  // the hub's fourth name
        #expect(try await send(second, 2, ["f"])?.contains("too_many_metrics") == true)
        #expect(try first.count("SELECT count(*) FROM rejected_frames WHERE reason LIKE 'too_many_metrics%'") == 2)
        await first.stop()

        let restarted = try await start()
        device = try await restarted.connect("chatty", token: token)
        #expect(try await send(device, 5, ["d"])?.contains("too_many_metrics") == true)
        #expect(try await send(device, 6, ["c"]) == nil)
        second = try await restarted.connect("other", token: other)
        #expect(try await send(second, 3, ["g"])?.contains("too_many_metrics") == true)
        #expect(try await send(second, 4, ["a"]) == nil)  // not new to the hub
        #expect(try restarted.count("SELECT count(*) FROM device_metric") == 5)
    }

    @Test("a REST statement past --statement-timeout answers 503 timeout, and /readyz answers at once meanwhile")
    func statementTimeout() async throws {
        let hub = try await TestHub.start { $0.statementTimeout = .seconds(1) }
        let locker = try PostgresConnection(url: hub.databaseURL)
        try locker.execute("BEGIN")
        try locker.execute("LOCK TABLE device_registry IN ACCESS EXCLUSIVE MODE")
        let started = ContinuousClock.now
        let answer = try await call(hub, "GET", "/api/v1/devices")
        #expect(answer.status == 503)
        #expect(((answer.json as? [String: Any])?["error"] as? [String: Any])?["code"] as? String == "timeout")
        #expect(ContinuousClock.now - started < .seconds(5))
        let probeStart = ContinuousClock.now
        #expect(try await call(hub, "GET", "/readyz", token: nil).status == 200)
        #expect(ContinuousClock.now - probeStart < .seconds(2))
        try locker.execute("ROLLBACK")
        #expect(try await call(hub, "GET", "/api/v1/devices").status == 200)
    }

    @Test("the OpenAPI document is served without a token")
    func openAPIDocument() async throws {
        let hub = try await TestHub.start()
        let answer = try await call(hub, "GET", "/api/v1/openapi.json", token: nil)
        #expect(answer.status == 200)
        let document = try #require(answer.json as? [String: Any])
        #expect((document["openapi"] as? String)?.hasPrefix("3.1") == true)
    }
}

extension IngestLiveTests {
    @Test("replay pages found through the rollups' seq ranges hold exactly the readings after a seq, whatever their times")
    func replayBySeqRanges() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("shuffled", token: try await hub.addDevice("shuffled"))
        let start: Int64 = 1_763_769_600_000_000
        // Seq order is not time order: 240 frames in a dense hour and two sparse ones, times
        // shuffled, with one to three metrics each.
        var generator = SystemRandomNumberGenerator()
        func slot(_ index: Int) -> Int64 {
            index < 160 ? Int64(index) * 20_000_000 : 3_600_000_000 + Int64(index - 160) * 90_000_000
        }
        let slots: [Int64] = (0..<240).map(slot).shuffled(using: &generator)
        for (index, offset) in slots.enumerated() {
            let seq = UInt64(index + 1)
            let names = ["a", "b", "c"].prefix(1 + index % 3)
            device.client.send(TelemetryFrame(seq: seq, baseTime: start + offset, readings: names.map { Reading(name: $0, value: .i64(Int64(seq))) }))
        }
        try await device.waitForAck(240)
        let key = try #require(hub.hub.registry.record(id: "shuffled")?.key)
        let executor = DatabaseExecutor(url: hub.databaseURL, name: "replay-test")
        HubScope.atEnd { await executor.shutdown() }
        let history = PostgresTelemetryHistory(executor: executor, pageRows: 7)
        func replay(after: UInt64, since: Int64?, metrics: Set<String>?) async throws -> [String] {
            var seen: [String] = []
            var cursor = after
            while true {
                let page = try await history.page(deviceKey: key, afterSeq: cursor, sinceMicros: since, metrics: metrics)
                guard let last = page.last else { return seen }
                seen += page.map { "\($0.seq)/\($0.metric)/\($0.tsMicros)" }
                cursor = last.seq
            }
        }
        func expected(after: UInt64, since: Int64?, metrics: Set<String>?) throws -> [String] {
            try hub.query(
                """
                SELECT seq || '/' || metric || '/' || (extract(epoch FROM ts) * 1000000)::bigint FROM telemetry
                WHERE device_id = 'shuffled' AND seq > $1 AND ($2::bigint IS NULL OR ts >= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond')
                    AND ($3::text IS NULL OR metric = $3) ORDER BY seq, ts, metric
                """, [String(after), since.map(String.init), metrics?.first]
            ).rows.map { $0[0]! }
        }
        // Once with deltas still pending (the fold runs every second), once all folded.
        for round in 0..<2 {
            if round == 1 { try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 } }
            for after in [0, 1, 17, 150, 239, 240] as [UInt64] {
                for since in [nil, start + 1_800_000_000] as [Int64?] {
                    for metrics in [nil, ["b"]] as [Set<String>?] {
                        let got = try await replay(after: after, since: since, metrics: metrics)
                        #expect(got == (try expected(after: after, since: since, metrics: metrics)), "round \(round) after \(after) since \(String(describing: since)) \(String(describing: metrics))")
                    }
                }
            }
        }
        #expect(try expected(after: 0, since: nil, metrics: nil).count == 480)
    }
}
