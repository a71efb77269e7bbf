import Foundation
import HubIngest
import HubProtocol
import HubStorage
import HubTestSupport
import Postgres
import Testing

extension IngestLiveTests {
    /// Per (metric, minute) of one device, everything a minute delta holds, from `source`
    /// (rows shaped like `rollup_delta`), merged: what a rollup would get from it.
    static func mergedDeltas(_ connection: PostgresConnection, _ source: String, device: Int32) throws -> [[String?]] {
        func edge(_ side: String) -> String {
            "\(side)_ts || '/' || \(side)_seq || '/' || \(side)_type || '/' || coalesce(\(side)_value::text, '') || '/' || coalesce(\(side)_text, '')"
        }
        return try connection.query(
            """
            SELECT metric_key, bucket, sum(count), sum(value_count), sum(sum), min(min), max(max),
                (array_agg(\(edge("first")) ORDER BY first_ts, first_seq))[1],
                (array_agg(\(edge("last")) ORDER BY last_ts DESC, last_seq DESC))[1], min(min_seq), max(max_seq)
            FROM \(source) s WHERE device_key = $1 GROUP BY 1, 2 ORDER BY 1, 2
            """, [String(device)]).rows
    }

    /// Frames 1...n of a device: three metrics of mixed types, 7 s apart, and every 10th
    /// frame two days later (a second range in `rollup_pending`).
    func heldBurst(_ device: DeviceRecordRef, seqs: ClosedRange<UInt64>) -> IngestBurst {
        var burst = IngestBurst(device: device, connection: SilentConnection(), session: 0)
        burst.frames = seqs.map { seq in
            let late: Int64 = seq % 10 == 0 ? 2 * 86_400_000_000 : 0
            let frame = TelemetryFrame(seq: seq, baseTime: 1_764_374_400_000_000 + Int64(seq) * 7_000_000 + late, readings: [
                Reading(name: "temp", value: .f64(Double(seq % 17) * 0.5)),
                Reading(name: "rpm", offsetMicros: 3, value: .i64(Int64(seq) * 3)),
                Reading(name: "fw", offsetMicros: 5, value: .string("v\(seq % 3)")),
            ])
            return AcceptedFrame(frame: frame, receivedAtMicros: 1_764_374_400_000_000)
        }
        return burst
    }

    @Test("a writer's held rollup deltas count in queries at once, are written whole by a flush, and are rebuilt from the readings when its connection dies")
    func heldRollups() async throws {
        let url = try #require(TestCluster.current).makeDatabase()
        let connection = try PostgresConnection(url: url)
        defer { connection.close() }
        let store = try DeviceStore(connection: PostgresConnection(url: url))
        let (a, b) = (try store.create(id: "held-a").record, try store.create(id: "held-b").record)
        let (deviceA, deviceB) = (DeviceRecordRef(key: a.key, id: a.id), DeviceRecordRef(key: b.key, id: b.id))
        func count(_ sql: String) throws -> Int { Int(try connection.query(sql).rows[0][0] ?? "0") ?? -1 }

        // Five batches: the sink holds their deltas, one rollup_pending row per batch.
        let sink = PostgresIngestSink(url: url)
        for batch in 0..<5 as Range<UInt64> {
            #expect(try sink.write([heldBurst(deviceA, seqs: batch * 20 + 1...batch * 20 + 20)]).isEmpty)
        }
        #expect(sink.heldRollups > 0)
        #expect(try count("SELECT count(*) FROM rollup_delta") == 0)
        #expect(try count("SELECT count(*) FROM rollup_pending") == 5)
        // Queries read them through rollup_unfolded: every committed reading, at once.
        #expect(try count("SELECT sum(count) FROM rollup_unfolded WHERE device_key = \(a.key)") == 300)
        let fromReadings = try Self.mergedDeltas(connection, "rollup_unflushed", device: a.key)
        #expect(fromReadings.count > 2)
        // A live writer's deltas are not rebuilt: its connection holds its lock.
        #expect(try RollupFolder.rebuildAbandoned(on: connection) == 0)

        try sink.flushRollups()
        #expect(sink.heldRollups == 0)
        #expect(try count("SELECT count(*) FROM rollup_pending") == 0)
        #expect(try Self.mergedDeltas(connection, "rollup_delta", device: a.key) == fromReadings)
        #expect(try count("SELECT count(*) FROM rollup_delta WHERE device_key = \(a.key)") == fromReadings.count)

        // Another writer dies holding deltas (its backend is terminated, as in a crash).
        let doomed = PostgresIngestSink(url: url)
        for batch in 0..<3 as Range<UInt64> {
            #expect(try doomed.write([heldBurst(deviceB, seqs: batch * 10 + 1...batch * 10 + 10)]).isEmpty)
        }
        let expected = try Self.mergedDeltas(connection, "rollup_unflushed", device: b.key)
        try connection.execute(
            """
            SELECT pg_terminate_backend(pid) FROM pg_locks
            WHERE locktype = 'advisory' AND classid = x'68756270'::integer::oid AND pid <> pg_backend_pid()
            """)
        try await eventually { try RollupFolder.rebuildAbandoned(on: connection) == 1 }
        #expect(try count("SELECT count(*) FROM rollup_pending") == 0)
        #expect(try Self.mergedDeltas(connection, "rollup_delta", device: b.key) == expected)
        #expect(try count("SELECT sum(count) FROM rollup_delta WHERE device_key = \(b.key)") == 90)

        // The sink goes on with a new connection and writer id; its new batches are held anew.
        #expect(try doomed.write([heldBurst(deviceB, seqs: 31...40)]).isEmpty)
        try doomed.flushRollups()
        #expect(try count("SELECT sum(count) FROM rollup_delta WHERE device_key = \(b.key)") == 120)
        #expect(try count("SELECT count(*) FROM rollup_pending") == 0)

        // Folded, the rollups hold every reading once.
        var cursor = RollupFolder.Cursor()
        while try RollupFolder.fold(on: connection, cursor: &cursor) > 0 {}
        #expect(try count("SELECT sum(count) FROM rollup_1h") == 420)
        #expect(try count("SELECT count(*) FROM reading") == 420)
    }
}
