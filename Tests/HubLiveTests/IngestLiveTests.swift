import Foundation
import HubClient
import HubProtocol
import HubTestSupport
import Postgres
import Testing

/// Live tests: a real hub on loopback and a real PostgreSQL, started by the suite.
@Suite("Live ingest", .serialized, .withTestCluster, .stopsWhatItStarts)
struct IngestLiveTests {
    @Test("a device streams frames and every reading is stored exactly once with exact values and times")
    func streamsIntoPostgres() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("sensor-1")
        let device = try await hub.connect("sensor-1", token: token)
        #expect(device.welcome.lastSeq == 0)
        #expect(device.welcome.session == 1)
        #expect(device.welcome.maxFrameBytes == 65_536)

        let frames = (1...200).map { sampleFrame(seq: UInt64($0), count: 4) }
        for frame in frames { device.client.send(frame) }
        try await device.waitForAck(200)

        let rows = try hub.query(
            """
            SELECT seq, metric, (extract(epoch FROM ts) * 1000000)::bigint, value, text_value
            FROM telemetry WHERE device_id = 'sensor-1' ORDER BY seq, metric
            """).rows
        #expect(rows.count == 800)
        var expected: [[String?]] = []
        for frame in frames {
            for reading in frame.readings.sorted(by: { $0.name < $1.name }) {
                let time = String(frame.baseTime + Int64(reading.offsetMicros))
                switch reading.value {
                case .f64(let value): expected.append([String(frame.seq), reading.name, time, String(value), nil])
                case .i64(let value): expected.append([String(frame.seq), reading.name, time, String(value), nil])
                case .bool(let value): expected.append([String(frame.seq), reading.name, time, value ? "1" : "0", nil])
                case .string(let value): expected.append([String(frame.seq), reading.name, time, nil, value])
                }
            }
        }
        #expect(rows == expected)
        #expect(try hub.count("SELECT last_seq FROM devices WHERE id = 'sensor-1'") == 200)
    }

    @Test("an ack arrives only after its rows are visible from another connection")
    func acksFollowCommits() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("acker")
        let device = try await hub.connect("acker", token: token)
        let observer = UncheckedBox(try PostgresConnection(url: hub.databaseURL))
        let violations = ViolationLog()
        // Check each ack on arrival, on the client's event loop, before the next is read.
        device.log.observe { event in
            guard case .ack(let seq) = event else { return }
            let stored = (try? observer.value.query(
                "SELECT count(DISTINCT seq) FROM telemetry WHERE device_id = 'acker' AND seq <= $1", [String(seq)]
            ).rows.first?.first ?? nil).flatMap { Int($0) } ?? -1
            if stored != Int(seq) { violations.add("ack \(seq) with \(stored) frames stored") }
        }
        for seq in 1...300 {
            device.client.send(sampleFrame(seq: UInt64(seq)))
            if seq % 50 == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        try await device.waitForAck(300)
        #expect(violations.all.isEmpty, "\(violations.all)")
        #expect(device.log.events.count > 1)
    }

    @Test("a duplicate resend after a reconnect stores nothing new, and the welcome carries the mark")
    func duplicatesAfterReconnect() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("resender")
        let first = try await hub.connect("resender", token: token)
        for seq in 1...50 { first.client.send(sampleFrame(seq: UInt64(seq))) }
        try await first.waitForAck(50)
        await first.client.close()

        let second = try await hub.connect("resender", token: token, tokenInQuery: true)
        #expect(second.welcome.lastSeq == 50)
        #expect(second.welcome.session == 2)
        for seq in 40...60 { second.client.send(sampleFrame(seq: UInt64(seq))) }
        try await second.waitForAck(60)
        #expect(try hub.count("SELECT count(*) FROM telemetry WHERE device_id = 'resender'") == 60 * 3)
        #expect(try hub.count("SELECT count(DISTINCT (seq, metric)) FROM telemetry WHERE device_id = 'resender'") == 60 * 3)
        // Resending only old frames still gets an ack for the mark.
        let third = try await hub.connect("resender", token: token)
        #expect(third.welcome.lastSeq == 60)
        third.client.send(sampleFrame(seq: 10))
        try await third.waitForAck(60)
    }

    @Test("every invalid golden vector lands in rejected_frames and the connection stays open")
    func invalidVectorsAreQuarantined() async throws {
        let hub = try await TestHub.start()
        let vectors = GoldenVectors.shared
        // One device per vector: most invalid vectors carry seq 1, and on one device only the
        // first would be above the mark (the others would be duplicates, as the contract says).
        for (index, vector) in vectors.invalid.enumerated() {
            let id = "bad-\(index)"
            let device = try await hub.connect(id, token: try await hub.addDevice(id))
            device.client.sendBinary(bytes(hex: vector.hex))
            try await eventually { device.texts.count == 1 }
            #expect(device.texts[0].hasPrefix(#"{"type":"rejected","seq":"#), "\(vector.why)")
            try await eventually { (try? hub.count("SELECT count(*) FROM rejected_frames WHERE device_id = $1", [id])) == 1 }
            let stored = try hub.query("SELECT encode(payload, 'hex'), reason FROM rejected_frames WHERE device_id = $1", [id])
            #expect(stored.rows[0][0] == vector.hex, "\(vector.why)")
            #expect(!(stored.rows[0][1] ?? "").isEmpty)
            // The connection stays open: a good frame above the mark is stored and acked.
            let next = device.welcome.lastSeq + 2
            device.client.send(sampleFrame(seq: next))
            try await device.waitForAck(next)
            #expect(!device.isClosed, "\(vector.why)")
            await device.client.close()
        }
        #expect(try hub.count("SELECT count(*) FROM rejected_frames") == vectors.invalid.count)
    }

    @Test("a bad frame at or below the mark is a duplicate, whatever its body")
    func duplicateCheckComesFirst() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("dup-bad")
        let device = try await hub.connect("dup-bad", token: token)
        device.client.send(sampleFrame(seq: 5))
        try await device.waitForAck(5)
        // seq 1 with a NaN reading: at or below the mark, so acked and not quarantined.
        let nan = GoldenVectors.shared.invalidHex("NaN")
        device.client.sendBinary(bytes(hex: nan))
        device.client.send(sampleFrame(seq: 6))
        try await device.waitForAck(6)
        #expect(device.texts.isEmpty)
        #expect(try hub.count("SELECT count(*) FROM rejected_frames") == 0)
    }

    @Test("more than 100 bad frames within a minute closes the connection with 1008")
    func badFrameLimitCloses() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("noisy")
        let device = try await hub.connect("noisy", token: token)
        for _ in 0..<101 { device.client.sendBinary([0x02]) }
        #expect(try await device.waitForClose() == 1008)
        try await eventually { (try? hub.count("SELECT count(*) FROM rejected_frames WHERE device_id = 'noisy'")) == 101 }
    }

    @Test("a malformed text message gets an error and the connection stays open")
    func badTextIsAnswered() async throws {
        let hub = try await TestHub.start()
        let token = try await hub.addDevice("texter")
        let device = try await hub.connect("texter", token: token)
        device.client.sendText("{not json")
        try await eventually { device.texts.count == 1 }
        #expect(device.texts[0].contains(#""type":"error""#))
        device.client.send(sampleFrame(seq: 1))
        try await device.waitForAck(1)
    }
}

final class ViolationLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ item: String) { lock.withLock { items.append(item) } }
    var all: [String] { lock.withLock { items } }
}

/// Holds a value used from one thread at a time (here: the client's event loop).
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
