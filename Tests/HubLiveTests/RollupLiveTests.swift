import Foundation
import HubIngest
import HubProtocol
import HubStorage
import Postgres
import HubTestSupport
import Testing

extension IngestLiveTests {
    @Test("bucketed queries from the rollups equal those from raw readings, for every aggregate; rollups outlive raw retention")
    func rollupsMatchRaw() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("rolled", token: try await hub.addDevice("rolled"))
        // 720 frames over 4 hours from 2025-11-29 00:00 UTC, 20 s apart, with values whose
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

        let hour: Int64 = 3_600_000_000
        let compare = try RollupComparison(hub, key: key, ranges: [(nil, nil), (start, start + 4 * hour), (start + hour, start + 3 * hour)])
        HubScope.atEnd { await compare.executor.shutdown() }
        // Right after ingest (deltas maybe not folded yet), then once everything is folded.
        try await compare.all()
        try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        #expect(try hub.count("SELECT count(*) FROM rollup_1h WHERE device_key = \(key)") == 19)
        // "fw" (about 4 an hour) and the one "temp" at 04:00 are sparse hours: no minute rows.
        #expect(try hub.count("SELECT count(*) FROM rollup_1h WHERE device_key = \(key) AND NOT minutes") == 7)
        #expect(try hub.count("SELECT count(*) FROM rollup_1m r JOIN metric m ON m.key = r.metric_key WHERE device_key = \(key) AND m.name = 'fw'") == 0)
        try await compare.all()

        // Raw readings gone (as retention would do): the hour buckets still answer over REST.
        _ = try hub.query("DELETE FROM reading WHERE device_key = $1", [String(key)])
        let answer = try await call(hub, "GET", "/api/v1/devices/rolled/telemetry?metric=count&bucket_s=3600&agg=count&from_us=\(start)&to_us=\(start + 4 * hour)")
        let rows = try #require(answer.json as? [[String: Any]])
        #expect(rows.compactMap { $0["value"] as? Int }.reduce(0, +) == 719)  // seq 720 is at 4 h exactly: outside
        let unaligned = try await call(hub, "GET", "/api/v1/devices/rolled/telemetry?metric=count&bucket_s=3600&agg=count&from_us=\(start + 1)&to_us=\(start + 4 * hour)")
        #expect((unaligned.json as? [[String: Any]])?.isEmpty == true)  // not aligned: raw rows, which are gone
    }
}

/// Asks the same bucketed queries of the rollups and of the raw readings and expects equal
/// answers: every aggregate, bucket_s 60, 300, 3600 and 7200, each range, and the metrics
/// all, "temp" and "fw".
struct RollupComparison {
    let executor: DatabaseExecutor
    let key: Int32
    let ranges: [(Int64?, Int64?)]
    let rollups: PostgresTelemetryQueries
    let raw: PostgresTelemetryQueries

    init(_ hub: TestHub, key: Int32, ranges: [(Int64?, Int64?)]) throws {
        executor = DatabaseExecutor(url: hub.databaseURL, name: "test-queries", threads: 1)
        self.key = key
        self.ranges = ranges
        rollups = PostgresTelemetryQueries(executor: executor)
        raw = PostgresTelemetryQueries(executor: executor, useRollups: false)
    }

    /// - Returns: every raw answer, to compare with after the readings are gone.
    @discardableResult
    func all(expecting expected: [[TelemetryRow]]? = nil) async throws -> [[TelemetryRow]] {
        var answers: [[TelemetryRow]] = []
        for aggregate in Aggregate.allCases {
            for bucket in [60, 300, 3600, 7200] as [Int64] {
                for (from, to) in ranges {
                    for metric in [nil, "temp", "fw"] as [String?] {
                        let a = try await rollups.buckets(deviceKey: key, metric: metric, fromMicros: from, toMicros: to, bucketSeconds: bucket, aggregate: aggregate, limit: 10_000)
                        var b = expected?[answers.count] ?? []
                        if expected == nil {
                            b = try await raw.buckets(deviceKey: key, metric: metric, fromMicros: from, toMicros: to, bucketSeconds: bucket, aggregate: aggregate, limit: 10_000)
                        }
                        let same = a == b
                        #expect(same, "\(aggregate) bucket_s=\(bucket) from=\(String(describing: from)) metric=\(metric ?? "*"): \(a.count) rows from rollups, \(b.count) raw; first difference \(String(describing: zip(a, b).first { $0 != $1 }))")
                        if metric != "fw" { #expect(!b.isEmpty) }
                        answers.append(b)
                    }
                }
            }
        }
        return answers
    }
}

extension IngestLiveTests {
    @Test("an hour keeps minute rows once it passes 60 readings, built from its readings; retention builds them for sparse hours first")
    func sparseHours() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("sparse", token: try await hub.addDevice("sparse"))
        let key = try #require(hub.hub.registry.record(id: "sparse")?.key)
        // 2025-11-29 10:00 UTC; "temp" every 2 minutes, "fw" now and then.
        let start: Int64 = 1_764_410_400_000_000
        let hour: Int64 = 3_600_000_000
        var seq: UInt64 = 0
        func send(_ count: Int, from offset: Int64, every step: Int64) async throws {
            for index in 0..<Int64(count) {
                seq += 1
                var readings = [Reading(name: "temp", value: .f64(Double(seq % 16) * 0.5))]
                if seq % 7 == 0 { readings.append(Reading(name: "fw", value: .string("v\(seq)"))) }
                device.client.send(TelemetryFrame(seq: seq, baseTime: start + offset + index * step, readings: readings))
            }
            try await device.waitForAck(seq)
            try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        }
        let compare = try RollupComparison(hub, key: key, ranges: [(nil, nil), (start, start + 3 * hour), (start + hour, start + 2 * hour)])
        HubScope.atEnd { await compare.executor.shutdown() }
        let minuteRows = "SELECT count(*) FROM rollup_1m WHERE device_key = \(key)"
        let sparseHours = "SELECT count(*) FROM rollup_1h WHERE device_key = \(key) AND NOT minutes"

        // 30 readings in each of three hours: all sparse, no minute rows.
        for h in 0..<3 as Range<Int64> { try await send(30, from: h * hour, every: 120_000_000) }
        #expect(try hub.count(minuteRows) == 0)
        #expect(try hub.count(sparseHours) == 6)
        // Their minutes are in the hour rows' arrays: one element per minute with readings.
        let minutesWithReadings = "SELECT count(DISTINCT (metric_key, date_bin('1 minute', ts, 'epoch'))) FROM reading WHERE device_key = \(key)"
        #expect(try hub.count("SELECT sum(cardinality(m_minute))::int FROM rollup_1h WHERE device_key = \(key)") == hub.count(minutesWithReadings))
        #expect(try hub.count("SELECT sum(c)::int FROM rollup_1h, unnest(m_count) c WHERE device_key = \(key)") == 90 + 12)
        try await compare.all()
        // Hours folded before minute arrays existed get theirs at start, from their readings:
        // drop the arrays as if made by that version, and apply the schema again.
        let names = ["minute", "count", "value_count", "sum", "min", "max"]
        let arrays = "SELECT metric_key, bucket, u.* FROM rollup_1h, unnest(\(names.map { "m_\($0)" }.joined(separator: ", "))) u ORDER BY 1, 2, 3"
        let made = try hub.query(arrays).rows
        let connection = try PostgresConnection(url: hub.databaseURL)
        defer { connection.close() }
        #expect(try RollupFolder.completeMinuteArrays(on: connection) == 0)  // none missing
        // That version had no minute view either (it reads the arrays).
        _ = try hub.query("DROP VIEW telemetry_minutely")
        _ = try hub.query("ALTER TABLE rollup_1h \(names.map { "DROP COLUMN m_\($0)" }.joined(separator: ", "))")
        try Schema.apply(on: connection)
        #expect(try hub.count("SELECT count(*) FROM rollup_horizon WHERE minute_arrays_missing") == 1)
        #expect(try RollupFolder.completeMinuteArrays(on: connection) == 6)
        #expect(try hub.query(arrays).rows == made)
        #expect(try RollupFolder.completeMinuteArrays(on: connection) == 0)

        // 40 more "temp" in the first hour, a second after the others: it crosses 60 and
        // gets minute rows for all 70 readings, built from the readings.
        try await send(40, from: 1_000_000, every: 60_000_000)
        #expect(try hub.count("SELECT count(*) FROM rollup_1h h JOIN metric m ON m.key = h.metric_key WHERE device_key = \(key) AND m.name = 'temp' AND minutes AND count = 70") == 1)
        #expect(try hub.count("SELECT sum(count)::int FROM rollup_1m r JOIN metric m ON m.key = r.metric_key WHERE device_key = \(key) AND m.name = 'temp'") == 70)
        #expect(try hub.count("SELECT count(*) FROM rollup_1h WHERE device_key = \(key) AND minutes AND m_minute IS NOT NULL") == 0)
        try await compare.all()
        // More readings into the crossed hour go straight to its minute rows.
        try await send(5, from: 1_500_000, every: 600_000_000)
        #expect(try hub.count("SELECT sum(count)::int FROM rollup_1m r JOIN metric m ON m.key = r.metric_key WHERE device_key = \(key) AND m.name = 'temp'") == 75)
        try await compare.all()

        // Retention's first step: minute rows for every sparse hour before the cut, then the
        // readings go. Minute buckets of those hours still answer as the readings did.
        let kept = try RollupComparison(hub, key: key, ranges: [(start, start + 2 * hour)])
        HubScope.atEnd { await kept.executor.shutdown() }
        let rawAnswers = try await kept.all()
        let built = try RollupFolder.keepMinutes(before: "2025-11-29T12:00:00Z", on: connection)
        #expect(built == 3)  // "fw" of 10:00, "temp" and "fw" of 11:00
        #expect(try hub.count(sparseHours) == 2)
        _ = try hub.query("DELETE FROM reading WHERE device_key = $1 AND ts < '2025-11-29T12:00:00Z'", [String(key)])
        #expect(try hub.count("SELECT count(*) FROM reading WHERE device_key = \(key) AND ts < '2025-11-29T12:00:00Z'") == 0)
        try await kept.all(expecting: rawAnswers)

        // A late reading for an hour before that cut gets minute rows at once.
        try await send(1, from: -30 * 60_000_000, every: 1)
        #expect(try hub.count(sparseHours) == 2)
        #expect(try hub.count("SELECT sum(count)::int FROM rollup_1m WHERE device_key = \(key) AND bucket < '2025-11-29T10:00:00Z'") == 1)
    }
}

extension IngestLiveTests {
    @Test("a sparse hour's minute arrays hold minutes of several readings and of mixed types, and merge a later reading into a minute")
    func sparseMinuteArrays() async throws {
        let hub = try await TestHub.start()
        let device = try await hub.connect("mixed", token: try await hub.addDevice("mixed"))
        let key = try #require(hub.hub.registry.record(id: "mixed")?.key)
        let start: Int64 = 1_764_410_400_000_000  // 2025-11-29 10:00 UTC
        let frames: [(Int64, [Reading])] = [
            (0, [Reading(name: "temp", value: .f64(1)), Reading(name: "fw", value: .string("a"))]),
            (10, [Reading(name: "temp", value: .f64(5))]),
            (20, [Reading(name: "temp", value: .f64(3)), Reading(name: "fw", value: .string("b"))]),
            (70, [Reading(name: "temp", value: .i64(7))]),
            (130, [Reading(name: "temp", value: .bool(true))]),
            (190, [Reading(name: "temp", value: .string("x"))]),
            (200, [Reading(name: "temp", value: .f64(2.5))]),
        ]
        for (index, (second, readings)) in frames.enumerated() {
            device.client.send(TelemetryFrame(seq: UInt64(index + 1), baseTime: start + second * 1_000_000, readings: readings))
        }
        try await device.waitForAck(UInt64(frames.count))
        try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        func minutes(_ metric: String) throws -> String? {
            try hub.query(
                """
                SELECT string_agg(format('%s:%s:%s:%s:%s:%s', u.minute, u.count, u.value_count, u.sum, u.min, u.max), ' ' ORDER BY u.minute)
                FROM rollup_1h h JOIN metric m ON m.key = h.metric_key,
                    unnest(m_minute, m_count, m_value_count, m_sum, m_min, m_max) u(minute, count, value_count, sum, min, max)
                WHERE h.device_key = \(key) AND m.name = $1 AND NOT h.minutes
                """, [metric]
            ).rows.first?.first ?? nil
        }
        // minute:count:value_count:sum:min:max; a minute of one reading keeps only its sum.
        #expect(try minutes("temp") == "0:3:3:9:1:5 1:1::7:: 2:1::1:: 3:2:1:2.5:2.5:2.5")
        #expect(try minutes("fw") == "0:2:0:::")
        let compare = try RollupComparison(hub, key: key, ranges: [(nil, nil), (start, start + 3_600_000_000)])
        HubScope.atEnd { await compare.executor.shutdown() }
        try await compare.all()

        // A later reading in a minute the arrays already hold is merged into it.
        device.client.send(TelemetryFrame(seq: 8, baseTime: start + 15_000_000, readings: [Reading(name: "temp", value: .f64(0.5))]))
        try await device.waitForAck(8)
        try await eventually { try hub.count("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)") == 0 }
        #expect(try minutes("temp") == "0:4:4:9.5:0.5:5 1:1::7:: 2:1::1:: 3:2:1:2.5:2.5:2.5")
        try await compare.all()
    }
}

extension IngestLiveTests {
    @Test("a fold that takes part of the pending deltas never builds minute rows from readings whose deltas it left behind")
    func partialFold() async throws {
        let cluster = try #require(TestCluster.current)
        let connection = try PostgresConnection(url: try cluster.makeDatabase())
        defer { connection.close() }
        try connection.execute("INSERT INTO device_registry (id) VALUES ('d'); INSERT INTO metric (name) VALUES ('m')")
        // Readings `seq` in `range`, 50 s apart from 10:00, each with its delta, as ingest writes them.
        func add(_ range: ClosedRange<Int>) throws {
            try connection.execute(
                """
                INSERT INTO reading SELECT 1, 1, i, '2025-11-29 10:00:00+00'::timestamptz + i * interval '50 seconds', 1, i, NULL
                    FROM generate_series(\(range.lowerBound), \(range.upperBound)) i;
                INSERT INTO rollup_delta SELECT 1, 1, date_bin('1 minute', ts, 'epoch'), 1, 1, value, value, value,
                    ts, seq, 1, value, NULL, ts, seq, 1, value, NULL
                    FROM reading WHERE seq BETWEEN \(range.lowerBound) AND \(range.upperBound)
                """)
        }
        func count(_ sql: String) throws -> Int { Int(try connection.query(sql).rows[0][0] ?? "0") ?? -1 }
        var cursor = RollupFolder.Cursor()
        try add(1...50)
        #expect(try RollupFolder.fold(on: connection, cursor: &cursor) == 50)
        #expect(try count("SELECT count(*) FROM rollup_1h WHERE NOT minutes") == 1)
        // 20 more, folded 5 at a time: the hour passes 60 while 5 of its deltas still wait.
        try add(51...70)
        var folds = 0
        while try RollupFolder.fold(on: connection, cursor: &cursor, limit: 5) > 0 { folds += 1 }
        #expect(folds == 4)
        #expect(try count("SELECT count(*) FROM rollup_1h WHERE minutes AND count = 70") == 1)
        #expect(try count("SELECT sum(count) FROM rollup_1m") == 70)
        #expect(try count("SELECT sum(sum)::int FROM rollup_1m") == (1...70).reduce(0, +))
    }
}
