import Foundation
import Hub
import HubClient
import HubProtocol
import Postgres
import HubTestSupport
import Testing

extension IngestLiveTests {
    func partitions(_ hub: TestHub) throws -> [String] {
        try hub.query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'reading'::regclass ORDER BY 1"
        ).rows.compactMap { $0[0] }
    }

    @Test("a database made by the schema of 2026-11-22 upgrades in place: every reading stays, moves into time partitions, and gets rollups")
    func schemaMigration() async throws {
        let cluster = try #require(TestCluster.current)
        let url = try cluster.makeDatabase(schema: false)
        let old = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Fixtures/schema-2026-11-22.sql"), encoding: .utf8)
        let connection = try PostgresConnection(url: url)
        try connection.execute(old)
        #expect(try connection.query("SELECT relkind FROM pg_class WHERE relname = 'reading'").rows.first?.first == "r")
        // Ten days back from midnight UTC today: inside the window the hub partitions.
        let day = 86_400.0
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / day).rounded(.down) * day - 10 * day)
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        func partition(_ offset: Double) -> String {
            let parts = utc.dateComponents([.year, .month, .day], from: start.addingTimeInterval(offset * day))
            return String(format: "reading_p%04d%02d%02d00", parts.year!, parts.month!, parts.day!)
        }
        try connection.execute(
            """
            INSERT INTO device_registry (id, last_seq) VALUES ('legacy', 3000);
            INSERT INTO metric (name) VALUES ('temp');
            INSERT INTO reading (device_key, metric_key, seq, ts, value_type, value)
            SELECT d.key, m.key, s, to_timestamp(\(Int(start.timeIntervalSince1970))) + s * interval '1 minute', 1, s * 0.5
            FROM device_registry d, metric m, generate_series(1, 3000) s;
            """)
        let before = try connection.query("SELECT count(*), sum(value), min(ts)::text, max(ts)::text FROM telemetry").rows[0]

        let hub = try await TestHub.start(databaseURL: url)
        #expect(try hub.query("SELECT relkind FROM pg_class WHERE relname = 'reading'").rows.first?.first == "p")
        #expect(try hub.query("SELECT count(*), sum(value), min(ts)::text, max(ts)::text FROM telemetry").rows[0] == before)
        // The start-up round moves the old rows out of the default partition, a day each.
        #expect(try hub.count("SELECT count(*) FROM reading_default") == 0)
        #expect(Set(try partitions(hub)).isSuperset(of: (0..<3).map { partition(Double($0)) }))
        #expect(try hub.count("SELECT count(*) FROM \(partition(0))") == 1439)
        // That schema kept no rollups: they are built, and answer as the readings do.
        try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        #expect(try hub.count("SELECT sum(count)::int FROM rollup_1h") == 3000)
        let compare = try RollupComparison(hub, key: try #require(hub.hub.registry.record(id: "legacy")?.key), ranges: [(nil, nil)])
        HubScope.atEnd { await compare.executor.shutdown() }
        try await compare.all()
        // The device keeps its mark: a resend of an old seq is a duplicate.
        let token = try #require((try await call(hub, "POST", "/api/v1/devices/legacy/token").json as? [String: Any])?["token"] as? String)
        let device = try await hub.connect("legacy", token: token)
        #expect(device.welcome.lastSeq == 3000)
    }

    @Test("late readings get partitions of their own; far-off ones, spread over every year, stay in the default partition and make none")
    func lateAndFutureData() async throws {
        let hub = try await TestHub.start { $0.storage.interval = .milliseconds(200) }
        let device = try await hub.connect("time-traveller", token: try await hub.addDevice("time-traveller"))
        let day: Int64 = 86_400_000_000
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let late = now - 10 * day
        // Outside the window of 31 days back: a year ago, 40 days ago, a month ahead, the
        // first microsecond after the epoch (0 would mean "now") and the last the format
        // allows, and one reading in each of 300 spans spread from 1970 to 9999.
        var far = [now - 400 * day, now - 40 * day, now + 30 * day, 1, FrameLimits.endOfTimeMicros - 1]
        far += (0..<300).map { Int64($0) * (FrameLimits.endOfTimeMicros / 300) + 12_345 }
        let before = try partitions(hub).count
        for (index, time) in ([late] + far).enumerated() {
            device.client.send(TelemetryFrame(seq: UInt64(index + 1), baseTime: time, readings: [Reading(name: "t", value: .i64(Int64(index)))]))
        }
        try await device.waitForAck(UInt64(far.count + 1))
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'time-traveller'") == far.count + 1)
        // The late reading moves into a partition of its own; the far-off ones stay.
        try await eventually { try hub.count("SELECT count(*) FROM reading_default") == far.count }
        try await Task.sleep(for: .seconds(1))  // a few more rounds
        #expect(try partitions(hub).count == before + 1)
        #expect(try hub.count("SELECT count(*) FROM reading_default") == far.count)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'time-traveller'") == far.count + 1)
        // Queries without a time bound answer, raw and bucketed.
        for path in ["telemetry?limit=10000", "telemetry?bucket_s=86400&agg=count", "telemetry?bucket_s=1&agg=sum", "telemetry?bucket_s=253402300800&agg=count"] {
            let answer = try await call(hub, "GET", "/api/v1/devices/time-traveller/\(path)")
            #expect(answer.status == 200, "\(path)")
        }
        let all = try await call(hub, "GET", "/api/v1/devices/time-traveller/telemetry?bucket_s=253402300800&agg=count")
        let rows = try #require(all.json as? [[String: Any]])
        #expect(rows.reduce(0) { $0 + (($1["value"] as? Int) ?? 0) } == far.count + 1)
    }

    @Test("partition upkeep skips its rounds while another hub on the database holds their advisory lock, and runs once it is free")
    func partitionUpkeepOneHubAtATime() async throws {
        let hub = try await TestHub.start { $0.storage.interval = .milliseconds(200) }
        // Another hub's round in progress: the lock ("hub_", "part") on a connection of its own.
        let other = try PostgresConnection(url: hub.databaseURL)
        // Taken between two of this hub's rounds (it holds the lock while one runs).
        try await eventually { try other.query("SELECT pg_try_advisory_lock(\(0x6875_625f), \(0x7061_7274))").rows.first?[0] == "t" }
        let device = try await hub.connect("late-sender", token: try await hub.addDevice("late-sender"))
        let tenDaysAgo = Int64(Date().timeIntervalSince1970 * 1_000_000) - 10 * 86_400_000_000
        device.client.send(TelemetryFrame(seq: 1, baseTime: tenDaysAgo, readings: [Reading(name: "t", value: .i64(1))]))
        try await device.waitForAck(1)
        try await Task.sleep(for: .seconds(1.5))  // several rounds, each skipped
        #expect(try hub.count("SELECT count(*) FROM reading_default") == 1)
        _ = try other.query("SELECT pg_advisory_unlock(\(0x6875_625f), \(0x7061_7274))")
        try await eventually { try hub.count("SELECT count(*) FROM reading_default") == 0 }
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'late-sender'") == 1)
        other.close()
    }

    @Test("retention drops whole partitions past the window while a device streams; acks keep coming; counts are reported")
    func retention() async throws {
        let cluster = try #require(TestCluster.current)
        let url = try cluster.makeDatabase()
        // Old data first, through the normal path, with retention off.
        let loader = try await TestHub.start(databaseURL: url) { $0.storage.interval = .milliseconds(200) }
        let token = try await loader.addDevice("aging")
        let old = try await loader.connect("aging", token: token)
        let day: Int64 = 86_400_000_000
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        for seq in 1...300 as ClosedRange<UInt64> {
            // 10 to 19 days old: ten partitions past a 5-day window.
            old.client.send(TelemetryFrame(seq: seq, baseTime: now - (10 + Int64(seq % 10)) * day, readings: [Reading(name: "v", value: .f64(1))]))
        }
        try await old.waitForAck(300)
        // Into day partitions of their own, so retention has whole partitions to drop.
        try await eventually { try loader.count("SELECT count(*) FROM reading_default") == 0 }
        await old.client.close()
        await loader.stop()
        let oldPartitions = try PostgresConnection(url: url).query(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'reading'::regclass").rows[0][0]

        let hub = try await TestHub.start(databaseURL: url) {
            $0.storage.retentionDays = 5
            $0.storage.interval = .milliseconds(300)
        }
        let device = try await hub.connect("aging", token: token)
        // Stream while retention runs, timing every ack.
        var longestAckMillis = 0.0
        for seq in 301...420 as ClosedRange<UInt64> {
            let sent = ContinuousClock.now
            device.client.send(TelemetryFrame(seq: seq, baseTime: 0, readings: [Reading(name: "v", value: .f64(2))]))
            try await device.waitForAck(seq)
            let took = ContinuousClock.now - sent
            longestAckMillis = max(longestAckMillis, Double(took.components.attoseconds) / 1e15 + Double(took.components.seconds) * 1000)
        }
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'aging'") == 120)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'aging' AND value = 1") == 0)
        let report = hub.hub.storageReport
        #expect(report.readingsDropped == 300)
        #expect(report.partitionsDropped >= 10)
        #expect(longestAckMillis < 2_000, "an ack waited \(longestAckMillis) ms")
        // The rollups of the dropped readings stay, minute rows included (those hours were
        // sparse, so retention built their minute rows before the drop).
        for table in ["rollup_1m", "rollup_1h"] {
            #expect(try hub.count("SELECT sum(count)::int FROM \(table) WHERE bucket < now() - interval '9 days'") == 300, "\(table)")
        }
        #expect(report.hoursGivenMinutes == 10)
        print("retention: dropped \(report.partitionsDropped) partitions (\(report.readingsDropped) readings) of \(oldPartitions ?? "?"); longest drop \(String(format: "%.1f", report.longestDropMillis)) ms; longest ack meanwhile \(String(format: "%.1f", longestAckMillis)) ms")
    }
}
