import Foundation
import HubIngest
import HubProtocol
import HubTestSupport
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import HubTransport

/// Answers nothing: the HTTP channel tests never reach the database.
private struct NoDatabase: DeviceAdmin, TelemetryQueries, FleetQueries {
    struct Unused: Error {}
    func create(id: String, labelsJSON: String) async throws -> (record: DeviceRecord, token: String) { throw Unused() }
    func list(_ filter: DeviceFilter) async throws -> [DeviceInfo] { throw Unused() }
    func info(id: String) async throws -> DeviceInfo? { throw Unused() }
    func update(id: String, enabled: Bool?, labelsJSON: String?) async throws -> DeviceRecord? { throw Unused() }
    func delete(id: String, purge: Bool) async throws -> Bool { throw Unused() }
    func rotateToken(id: String) async throws -> (record: DeviceRecord, token: String)? { throw Unused() }
    func raw(deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, limit: Int) async throws -> [TelemetryRow] {
        throw Unused()
    }
    func buckets(
        deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, bucketSeconds: Int64, aggregate: Aggregate,
        limit: Int
    ) async throws -> [TelemetryRow] { throw Unused() }
    func latest(deviceKey: Int32) async throws -> [TelemetryRow] { throw Unused() }
    func rejected(deviceID: String, limit: Int) async throws -> [RejectedFrameRow] { throw Unused() }
    func counts(rejectedSinceMicros: Int64) async throws -> FleetCounts { throw Unused() }
}

/// One connection to the server's pipeline (HTTP, the upgrade, then the WebSocket
/// handlers) on an in-memory channel: a test feeds raw bytes and reads what went out.
private final class HTTPChannel {
    static let apiToken = "api-token-for-http-channel-tests"
    static let deviceToken = "device-token-for-http-channel-tests"

    let loop = NIOAsyncTestingEventLoop()
    let channel: NIOAsyncTestingChannel
    let sink = MemorySink()
    let writer: IngestWriter
    private var written: [UInt8] = []

    /// Every connection gets its own server (its own failed-authentication budget), unless given one.
    init(configuration: ServerConfiguration = ServerConfiguration(), server: HubServer? = nil) async throws {
        let registry = DeviceRegistry()
        registry.load([DeviceRecord(key: 1, id: "d1", tokenHash: DeviceToken.hash(Self.deviceToken))])
        let queue = IngestQueue(capacityRows: 1_000)
        let logger = Logger(label: "test")
        writer = IngestWriter(
            queue: queue, sink: sink, registry: registry, configuration: .init(policy: FlushPolicy(maxRows: 1, maxDelayNanos: 1_000_000)),
            logger: logger)
        let (fanout, clock, tokens) = (LiveFanout(), ManualClock(), APITokens(full: Self.apiToken, readOnly: nil))
        let core = HubCore(
            configuration: configuration, registry: registry, metricCatalog: MetricCatalog(limits: .init()), queue: queue,
            metrics: IngestMetrics(), tokens: tokens, history: sink,
            fanout: fanout, commands: CommandCenter(store: MemoryStore(), fanout: fanout, clock: clock, logger: logger),
            runner: RequestRunner(), clock: clock, logger: logger)
        let server = server ?? HubServer(
            core: core, tokens: tokens, admin: NoDatabase(), queries: NoDatabase(), fleet: NoDatabase(), logger: logger,
            provision: { _ in throw NoDatabase.Unused() }, metricsText: { "" }, readiness: { Readiness(ready: true, detail: "ready") },
            readingsPerSecond: { 0 }, drain: {}, bound: { _ in })
        writer.start()
        channel = NIOAsyncTestingChannel(loop: loop)
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5000))
        let channel = self.channel
        try await loop.executeInContext { try server.configurePipeline(channel) }
        self.server = server
    }

    let server: HubServer

    /// Feeds `text` one byte at a time.
    func drip(_ text: String) async throws {
        for byte in Array(text.utf8) { try await channel.writeInbound(ByteBuffer(bytes: [byte])) }
    }

    func feed(_ bytes: [UInt8]) async throws {
        try await channel.writeInbound(ByteBuffer(bytes: bytes))
    }

    /// Everything the server wrote so far.
    func output() async throws -> [UInt8] {
        await loop.run()
        while let buffer = try await channel.readOutbound(as: ByteBuffer.self) { written += buffer.readableBytesView }
        return written
    }

    /// The HTTP head the server wrote, and the WebSocket frames after it.
    func upgraded() async throws -> (head: String, frames: [(opcode: UInt8, payload: [UInt8])]) {
        let bytes = try await output()
        let end = Array("\r\n\r\n".utf8)
        guard let split = (0...max(0, bytes.count - end.count)).first(where: { Array(bytes[$0..<min(bytes.count, $0 + 4)]) == end }) else {
            return (String(decoding: bytes, as: UTF8.self), [])
        }
        return (String(decoding: bytes[..<split], as: UTF8.self), serverFrames(Array(bytes[(split + 4)...])))
    }

    var isActive: Bool { channel.isActive }

    func finish() async {
        await writer.shutdown()
        _ = try? await channel.finish()
    }
}

private func upgrade(_ target: String) -> String {
    "GET \(target) HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

@Suite("HTTP and upgrades on an in-memory channel")
struct HTTPChannelTests {
    @Test("two requests drip-fed one byte at a time on one connection are answered in order")
    func dripFedKeepAlive() async throws {
        let http = try await HTTPChannel()
        try await http.drip("GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: hub\r\n\r\n")
        let text = String(decoding: try await http.output(), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(text.contains("\r\n\r\nok\nHTTP/1.1 404 Not Found\r\n"))
        #expect(text.contains(#""code":"not_found""#))
        #expect(http.isActive)
        await http.finish()
    }

    @Test("an API request with a wrong token is refused on its head, before its body: 401, then the connection closes")
    func apiRefusedOnHead() async throws {
        let http = try await HTTPChannel()
        try await http.drip("POST /api/v1/devices HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer wrong\r\nContent-Length: 100\r\n\r\n")
        let text = String(decoding: try await http.output(), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
        #expect(text.contains("connection: close"))
        #expect(!http.isActive)
        await http.finish()
    }

    @Test("a refused upgrade is answered by the HTTP handler with the gate's decision: 401 for /live, 400 for /devices/")
    func refusedUpgrades() async throws {
        for (target, status) in [("/live?token=wrong", "401 Unauthorized"), ("/devices/", "400 Bad Request"), ("/devices/d1", "401 Unauthorized")] {
            let http = try await HTTPChannel()
            try await http.drip(upgrade(target))
            let text = String(decoding: try await http.output(), as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 \(status)\r\n"), "\(target)")
            #expect(!text.contains("101"), "\(target)")
            #expect(!http.isActive, "\(target)")
            await http.finish()
        }
    }

    @Test("a refused upgrade is decided once: it spends one failed authentication of the address's budget, not two")
    func refusedUpgradeCountsOnce() async throws {
        var configuration = ServerConfiguration()
        configuration.authFailuresPerSecond = 2
        let first = try await HTTPChannel(configuration: configuration)
        var statuses: [String] = []
        for index in 0..<3 {
            // The same server (and budget) on each new connection; its clock stands still.
            let http = index == 0 ? first : try await HTTPChannel(configuration: configuration, server: first.server)
            try await http.drip(upgrade("/live?token=wrong"))
            statuses.append(String(String(decoding: try await http.output(), as: UTF8.self).prefix(12)))
            await http.finish()
        }
        #expect(statuses == ["HTTP/1.1 401", "HTTP/1.1 401", "HTTP/1.1 429"])
    }

    @Test("/live with the token upgrades (the RFC 6455 accept key) and the dashboard is greeted with hello")
    func liveUpgrade() async throws {
        let http = try await HTTPChannel()
        try await http.drip(upgrade("/live?token=\(HTTPChannel.apiToken)"))
        let (head, frames) = try await http.upgraded()
        #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        #expect(head.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
        #expect(frames.map(\.opcode) == [0x1])
        let hello = String(decoding: frames.first?.payload ?? [], as: UTF8.self)
        #expect(hello.hasPrefix(#"{"type":"hello""#))
        try await http.feed(maskedFrame(opcode: 0x1, Array(#"{"type":"ping"}"#.utf8)))
        let after = try await http.upgraded().frames
        let last = after.last.map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(last == #"{"type":"pong"}"#)
        await http.finish()
    }

    @Test("a device with its token upgrades, is welcomed, and its frame is stored and acked")
    func deviceUpgrade() async throws {
        let http = try await HTTPChannel()
        try await http.drip(upgrade("/devices/d1?token=\(HTTPChannel.deviceToken)"))
        let (head, frames) = try await http.upgraded()
        #expect(head.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        let welcome = String(decoding: frames.first?.payload ?? [], as: UTF8.self)
        #expect(welcome.contains(#""type":"welcome","device":"d1""#))
        let frame = TelemetryFrame(seq: 1, baseTime: 1_763_769_600_000_000, readings: [Reading(name: "t", value: .f64(21.5))])
        try await http.feed(maskedFrame(opcode: 0x2, frame.encoded()))
        try await until("the ack is written") { try await http.upgraded().frames.last?.payload == Ack(seq: 1).encoded() }
        #expect(http.sink.seqs == [1])
        await http.finish()
    }
}
