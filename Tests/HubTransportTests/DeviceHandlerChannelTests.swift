import Foundation
import HubIngest
import HubProtocol
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import HubTestSupport
import Testing

@testable import HubTransport

/// A device's socket on an in-memory channel, with the WebSocket codec in front of the
/// hub's handlers, so a test feeds and reads raw bytes.
private final class DeviceChannel {
    let loop = NIOAsyncTestingEventLoop()
    let channel: NIOAsyncTestingChannel
    let sink = MemorySink()
    /// The handler's clock; the loop's own time drives its timers.
    let clock = ManualClock()
    let writer: IngestWriter
    let core: HubCore
    private var written: [UInt8] = []

    init() async throws {
        let registry = DeviceRegistry()
        registry.load([DeviceRecord(key: 1, id: "d1", tokenHash: nil)])
        let queue = IngestQueue(capacityRows: 1_000)
        writer = IngestWriter(
            queue: queue, sink: sink, registry: registry,
            configuration: .init(policy: FlushPolicy(maxRows: 1, maxDelayNanos: 1_000_000)), logger: Logger(label: "test"))
        let (fanout, clock, logger) = (LiveFanout(), self.clock, Logger(label: "test"))
        core = HubCore(
            configuration: ServerConfiguration(), registry: registry, metricCatalog: MetricCatalog(limits: .init()), queue: queue,
            metrics: IngestMetrics(), tokens: APITokens(full: "test-token-for-channel-tests", readOnly: nil), history: sink,
            fanout: fanout, commands: CommandCenter(store: MemoryStore(), fanout: fanout, clock: clock, logger: logger),
            runner: RequestRunner(), clock: clock, logger: logger)
        writer.start()
        channel = NIOAsyncTestingChannel(loop: loop)
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4000))
        let (core, channel) = (self.core, self.channel)
        try await loop.executeInContext {
            try channel.pipeline.syncOperations.addHandlers([
                WebSocketFrameEncoder(), ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 16)),
            ])
            try core.addDevice(registry.record(id: "d1")!, remote: "127.0.0.1:4000", to: channel)
        }
    }

    func feed(_ bytes: [UInt8]) async throws {
        try await channel.writeInbound(ByteBuffer(bytes: bytes))
    }

    /// Everything the hub wrote so far, as frames.
    func frames() async throws -> [(opcode: UInt8, payload: [UInt8])] {
        await loop.run()
        while let buffer = try await channel.readOutbound(as: ByteBuffer.self) { written += buffer.readableBytesView }
        return serverFrames(written)
    }

    /// Waits (real time, up to 5 s) until the hub wrote `count` frames.
    func frames(count: Int) async throws -> [(opcode: UInt8, payload: [UInt8])] {
        for _ in 0..<5_000 {
            let now = try await frames()
            if now.count >= count { return now }
            try await Task.sleep(for: .milliseconds(1))
        }
        return try await frames()
    }

    /// Moves the loop's timers and the handler's clock forward together.
    func advance(byMilliseconds milliseconds: Int64) async {
        clock.advance(by: .milliseconds(milliseconds))
        await loop.advanceTime(by: .milliseconds(milliseconds))
    }

    func finish() async {
        await writer.shutdown()
        _ = try? await channel.finish()
    }
}

@Suite("Device handler on an in-memory channel")
struct DeviceHandlerChannelTests {
    let frame = TelemetryFrame(seq: 1, baseTime: 1_763_769_600_000_000, readings: [Reading(name: "t", value: .f64(21.5))]).encoded()

    @Test("a frame fed one byte at a time is taken once, stored, and acked after the welcome")
    func dripFed() async throws {
        let device = try await DeviceChannel()
        let welcome = try await device.frames(count: 1)
        #expect(welcome.map(\.opcode) == [0x1])
        #expect(String(decoding: welcome[0].payload, as: UTF8.self).contains(#""type":"welcome""#))
        for byte in maskedFrame(opcode: 0x2, frame) { try await device.feed([byte]) }
        let frames = try await device.frames(count: 2)
        #expect(frames.map(\.opcode) == [0x1, 0x2])
        #expect(frames.last?.payload == Ack(seq: 1).encoded())
        #expect(device.sink.seqs == [1])
        await device.finish()
    }

    @Test("two frames in one write are stored in order and acked; a repeat is acked again, not stored again")
    func allAtOnce() async throws {
        let device = try await DeviceChannel()
        let second = TelemetryFrame(seq: 2, baseTime: 1_763_769_600_000_000, readings: [Reading(name: "t", value: .f64(22))]).encoded()
        try await device.feed(maskedFrame(opcode: 0x2, frame) + maskedFrame(opcode: 0x2, second))
        var frames = try await device.frames(count: 2)
        for _ in 0..<5_000 where frames.last?.payload != Ack(seq: 2).encoded() {
            try await Task.sleep(for: .milliseconds(1))
            frames = try await device.frames()
        }
        #expect(frames.last?.payload == Ack(seq: 2).encoded())
        #expect(device.sink.seqs == [1, 2])
        let before = frames.count
        try await device.feed(maskedFrame(opcode: 0x2, second))
        let after = try await device.frames(count: before + 1)
        #expect(after.count == before + 1)
        #expect(after.last?.payload == Ack(seq: 2).encoded())
        #expect(device.sink.seqs == [1, 2])
        await device.finish()
    }

    @Test("a ping is answered with a pong carrying the same bytes")
    func ping() async throws {
        let device = try await DeviceChannel()
        _ = try await device.frames(count: 1)
        for byte in maskedFrame(opcode: 0x9, Array("hello".utf8)) { try await device.feed([byte]) }
        let frames = try await device.frames(count: 2)
        #expect(frames.last?.opcode == 0xA)
        #expect(frames.last?.payload == Array("hello".utf8))
        await device.finish()
    }

    @Test("a device is pinged once every heartbeat_s, and closed with 4002 once silent for more than two intervals (within three); any frame counts")
    func heartbeat() async throws {
        let device = try await DeviceChannel()
        _ = try await device.frames(count: 1)
        let interval = Int64(ServerConfiguration().heartbeatSeconds) * 1_000
        let tick = LoopHeartbeat.tick.nanoseconds / 1_000_000
        // Its slot in the loop's heartbeat decides when in each interval it beats: once each.
        for _ in 0..<(2 * interval / tick) { await device.advance(byMilliseconds: tick) }
        #expect(try await device.frames().map(\.opcode) == [0x1, 0x9, 0x9])
        // A pong is heard: two more pings, then the close more than two intervals after it.
        try await device.feed(maskedFrame(opcode: 0xA, []))
        var waited: Int64 = 0
        while try await device.frames().last?.opcode != 0x8, waited <= 4 * interval {
            await device.advance(byMilliseconds: tick)
            waited += tick
        }
        let frames = try await device.frames()
        #expect(frames.map(\.opcode) == [0x1, 0x9, 0x9, 0x9, 0x9, 0x8])
        #expect(frames.last.map { UInt16($0.payload[0]) << 8 | UInt16($0.payload[1]) } == 4002)
        #expect(waited > 2 * interval && waited <= 3 * interval, "closed \(waited) ms after the pong")
        await device.finish()
    }
}
