import Foundation
import HubIngest
import HubProtocol
import HubStorage
import HubTestSupport
import Logging
import NIOConcurrencyHelpers
import Postgres
import Testing

/// Records what a claim round asks other nodes to drain.
final class RecordingDrain: NodeDrain, @unchecked Sendable {
    private let asked = NIOLockedValueBox<[[String: [DrainItem]]]>([])
    var requests: [[String: [DrainItem]]] { asked.withLockedValue { $0 } }
    func drain(_ requests: [String: [DrainItem]], timeoutNanos: UInt64) { asked.withLockedValue { $0.append(requests) } }
}

/// A connection that only counts: the sink never calls it.
final class SilentConnection: DeviceConnection, @unchecked Sendable {
    let connectionID = "silent"
    func committed(upTo seq: UInt64?, items: Int) {}
    func replace(whenDrained drained: @escaping @Sendable () -> Void) { drained() }
    func close(_ reason: CloseReason) {}
    func send(text: String) {}
}

extension IngestLiveTests {
    func claimer(_ url: String, node: String, drain: any NodeDrain = RecordingDrain()) -> PostgresDeviceClaims {
        PostgresDeviceClaims(url: url, settings: .init(node: node), drain: drain, clock: SystemClock(), logger: Logger(label: "test"))
    }

    func claim(_ claims: PostgresDeviceClaims, _ device: DeviceRecordRef) async throws -> DeviceClaim {
        try await withCheckedThrowingContinuation { continuation in
            claims.claim(device, remote: "127.0.0.1:1") { continuation.resume(with: $0.mapError { $0 as any Error }) }
        }
    }

    func storedBurst(_ device: DeviceRecordRef, session: Int64, seqs: ClosedRange<UInt64>) -> IngestBurst {
        var burst = IngestBurst(device: device, connection: SilentConnection(), session: session)
        burst.frames = seqs.map { AcceptedFrame(frame: sampleFrame(seq: $0), receivedAtMicros: 1_763_769_600_000_000) }
        return burst
    }

    @Test("cluster: a claim raises the session, names the owner, reads back the mark, and first asks the previous owner to drain")
    func claimReadsBackTheMark() async throws {
        let url = try #require(TestCluster.current).makeDatabase()
        let store = try DeviceStore(connection: PostgresConnection(url: url))
        let record = try store.create(id: "roamer").record
        let device = DeviceRecordRef(key: record.key, id: record.id)
        let (drain1, drain2) = (RecordingDrain(), RecordingDrain())
        let (node1, node2) = (claimer(url, node: "n1", drain: drain1), claimer(url, node: "n2", drain: drain2))
        node1.start()
        node2.start()
        HubScope.atEnd { await node1.stop(); await node2.stop() }

        let first = try await claim(node1, device)
        #expect(first == DeviceClaim(session: 1, mark: 0))
        #expect(drain1.requests.isEmpty)
        let sink = PostgresIngestSink(url: url, fencing: true)
        #expect(try sink.write([storedBurst(device, session: 1, seqs: 1...5)]).isEmpty)

        let second = try await claim(node2, device)
        #expect(second == DeviceClaim(session: 2, mark: 5))
        #expect(drain2.requests == [["n1": [DrainItem(device: "roamer", session: 1)]]])
        let row = try PostgresConnection(url: url).query("SELECT owner, session, last_seq FROM device_registry WHERE id = 'roamer'").rows
        #expect(row == [["n2", "2", "5"]])
    }

    @Test("cluster: a batch from a session that lost its device commits nothing for that device, and everything for the others")
    func fencedBatch() async throws {
        let url = try #require(TestCluster.current).makeDatabase()
        let store = try DeviceStore(connection: PostgresConnection(url: url))
        let (a, b) = (try store.create(id: "fenced-a").record, try store.create(id: "fenced-b").record)
        let (deviceA, deviceB) = (DeviceRecordRef(key: a.key, id: a.id), DeviceRecordRef(key: b.key, id: b.id))
        let (node1, node2) = (claimer(url, node: "n1"), claimer(url, node: "n2"))
        node1.start()
        node2.start()
        HubScope.atEnd { await node1.stop(); await node2.stop() }
        _ = try await claim(node1, deviceA)
        _ = try await claim(node1, deviceB)
        // Node 2 takes device A while node 1 still holds a batch for both.
        #expect(try await claim(node2, deviceA).session == 2)

        let sink = PostgresIngestSink(url: url, fencing: true)
        let fenced = try sink.write([storedBurst(deviceA, session: 1, seqs: 1...4), storedBurst(deviceB, session: 1, seqs: 1...3)])
        #expect(fenced == [DeviceFence(key: a.key, session: 1)])
        let connection = try PostgresConnection(url: url)
        let rows = try connection.query("SELECT device_id, count(DISTINCT seq), max(seq) FROM telemetry GROUP BY 1 ORDER BY 1").rows
        #expect(rows == [["fenced-b", "3", "3"]])
        #expect(try connection.query("SELECT id, last_seq FROM device_registry ORDER BY id").rows == [["fenced-a", "0"], ["fenced-b", "3"]])
        let unfolded = "SELECT coalesce(sum(count), 0) FROM rollup_unfolded WHERE device_key = $1"
        #expect(try connection.query(unfolded, [String(a.key)]).rows == [["0"]])
        #expect(try connection.query(unfolded, [String(b.key)]).rows == [["9"]])  // 3 frames of 3 readings

        // The new owner's session commits.
        #expect(try sink.write([storedBurst(deviceA, session: 2, seqs: 1...4)]).isEmpty)
        #expect(try connection.query("SELECT last_seq FROM device_registry WHERE id = 'fenced-a'").rows == [["4"]])
    }

    @Test("cluster: a reconnect storm of 500 devices is claimed in one round")
    func claimStorm() async throws {
        let url = try #require(TestCluster.current).makeDatabase()
        let connection = try PostgresConnection(url: url)
        try connection.execute("INSERT INTO device_registry (id) SELECT 'storm-' || i FROM generate_series(1, 500) i")
        let devices = try connection.query("SELECT key, id FROM device_registry ORDER BY key") { row in
            DeviceRecordRef(key: Int32(row.int64(0)!), id: row.string(1)!)
        }
        let claims = claimer(url, node: "n1")
        HubScope.atEnd { await claims.stop() }
        let results = NIOLockedValueBox<[Int32: DeviceClaim]>([:])
        for device in devices {
            claims.claim(device, remote: "10.0.0.1:1") { result in
                if case .success(let claim) = result { results.withLockedValue { $0[device.key] = claim } }
            }
        }
        claims.start()
        try await eventually { results.withLockedValue { $0.count } == 500 }
        #expect(claims.rounds == 1)
        #expect(Set(results.withLockedValue { $0.values.map(\.session) }) == [1])
        #expect(try connection.query("SELECT count(*) FROM device_registry WHERE owner = 'n1' AND session = 1").rows == [["500"]])
    }
}

extension IngestLiveTests {
    @Test("cluster: a final state saved over one already stored changes nothing, and its saver is told the standing one")
    func finalStateNeverOverwritten() async throws {
        let url = try #require(TestCluster.current).makeDatabase()
        let executor = DatabaseExecutor(url: url, name: "commands-test", threads: 1)
        let store = PostgresCommandStore(url: url, executor: executor, logger: Logger(label: "test"))
        store.start()
        HubScope.atEnd {
            await store.shutdown()
            await executor.shutdown()
        }
        let now: Int64 = 1_763_769_600_000_000
        let queued = Command(
            id: UUID().uuidString.lowercased(), device: "d1", name: "reboot", paramsJSON: "{}", status: .queued, resultJSON: nil,
            error: nil, createdMicros: now, updatedMicros: now, expiresMicros: now + 60_000_000)
        try await store.save(queued, isNew: true)
        var succeeded = queued
        (succeeded.status, succeeded.resultJSON, succeeded.updatedMicros) = (.succeeded, "{\"ok\": 1}", now + 1)
        try await store.save(succeeded, isNew: false)
        var timedOut = queued
        (timedOut.status, timedOut.updatedMicros) = (.timedOut, now + 2)
        await #expect(throws: CommandStoreError.alreadyFinal(succeeded)) { try await store.save(timedOut, isNew: false) }
        // A change that is not final, over a final state: nothing changes, nothing to tell.
        var sent = queued
        (sent.status, sent.updatedMicros) = (.sent, now + 3)
        try await store.save(sent, isNew: false)
        #expect(try await store.command(id: queued.id) == succeeded)
    }
}
