import Dispatch
import Foundation
import HubIngest
import HubProtocol
import HubTransport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
import ServiceLifecycle

/// The stateful fuzz target: one input is a program run against an in-process hub core
/// (`HubCore`) with two dashboards and three devices on in-memory channels, an ingest
/// writer over a sink in memory, a command store in memory, and the loop's test time.
///
/// Each byte picks an operation, the bytes after it its arguments: `/live` messages (raw
/// text, or subscribes built from the bytes with fuzzed patterns, rates and replay
/// requests), device frames, device text messages (raw, or replies to real commands with
/// fuzzed results and errors), commands, time passing, and dashboards that stop and start
/// reading. Besides "nothing crashes", it checks what the contract promises:
/// - within one subscription a dashboard never gets the same (device, seq) twice;
/// - nothing reaches the command store that PostgreSQL could not store (U+0000).
enum SessionFuzz {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        let program = Array(bytes)
        let done = DispatchSemaphore(value: 0)
        Task {
            let session = await Session()
            await session.run(program)
            await session.finish()
            done.signal()
        }
        done.wait()
    }
}

private final class Session: @unchecked Sendable {
    static let deviceIDs = ["d0", "d1", "sensor-2"]
    static let metrics = ["temp", "rpm", "door", "fw"]
    static let verbose = ProcessInfo.processInfo.environment["HUB_FUZZ_VERBOSE"] != nil

    let loop = NIOAsyncTestingEventLoop()
    /// The system clock: with a `ManualClock` advanced with the loop, the fuzzer found a
    /// repeated delivery (`Tests/Fuzz/session-findings`), not fixed yet.
    let clock: any HubClock = SystemClock()
    let registry = DeviceRegistry()
    let queue = IngestQueue(capacityRows: 10_000)
    let sink = MemorySink()
    let store = MemoryCommandStore()
    let writer: IngestWriter
    let core: HubCore
    /// The core's services (the request runner, the command center) as a group, run for
    /// the session and shut down gracefully at its end.
    let coreServices: ServiceGroup
    var coreRun: Task<Void, Never>?
    var dashboards: [NIOAsyncTestingChannel] = []
    var devices: [NIOAsyncTestingChannel] = []
    /// Device channels a reconnect replaced, finished at the end.
    var replaced: [NIOAsyncTestingChannel] = []
    var nextSeq: [UInt64] = [1, 1, 1]
    /// Per dashboard and subscription id: the (device, seq) pairs delivered since its `subscribed`.
    var delivered: [[String: Set<String>]] = [[:], [:]]

    init() async {
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        registry.load(Self.deviceIDs.enumerated().map { DeviceRecord(key: Int32($0.offset + 1), id: $0.element, tokenHash: nil) })
        var configuration = ServerConfiguration()
        configuration.maxFramesPerSecondPerDevice = 50
        configuration.maxDashboardQueueBytes = 4_096
        configuration.maxPendingCommandsPerDevice = 8
        configuration.maxRequestsInFlight = 2
        writer = IngestWriter(
            queue: queue, sink: sink, registry: registry,
            configuration: .init(policy: FlushPolicy(maxRows: 50, maxDelayNanos: 100_000)), logger: logger)
        let (fanout, runner) = (LiveFanout(), RequestRunner())
        let commands = CommandCenter(
            store: store, fanout: fanout, settings: .init(configuration: configuration), clock: clock, logger: logger)
        core = HubCore(
            configuration: configuration, registry: registry, metricCatalog: MetricCatalog(limits: {
                var limits = MetricCatalog.Limits()
                limits.perDevice = 3
                limits.total = 5
                return limits
            }()), queue: queue, metrics: IngestMetrics(), tokens: APITokens(full: "fuzz-full-api-token", readOnly: nil),
            history: sink, fanout: fanout, commands: commands, runner: runner, clock: clock, logger: logger)
        writer.start()
        let parts: [any Service] = [runner, commands]
        let services = ServiceGroup(configuration: .init(services: parts.map { .init(service: $0) }, logger: logger))
        coreServices = services
        coreRun = Task { try? await services.run() }
        for index in 0..<2 {
            let channel = NIOAsyncTestingChannel(loop: loop)
            try? await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1000 + index))
            try? await loop.executeInContext { try self.core.addDashboard(to: channel, access: index == 0 ? .full : .readOnly) }
            dashboards.append(channel)
        }
        for index in 0..<3 { devices.append(await connectDevice(index)) }
        await settle()
    }

    func connectDevice(_ index: Int) async -> NIOAsyncTestingChannel {
        let channel = NIOAsyncTestingChannel(loop: loop)
        try? await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2000 + index))
        let record = registry.record(id: Self.deviceIDs[index])!
        try? await loop.executeInContext { try self.core.addDevice(record, remote: "127.0.0.1:\(2000 + index)", to: channel) }
        return channel
    }

    func run(_ program: [UInt8]) async {
        var reader = ProgramReader(program)
        var steps = 0
        while let op = reader.byte(), steps < 64 {
            steps += 1
            if Self.verbose { FileHandle.standardError.write(Data("op \(op % 10)\n".utf8)) }
            switch op % 10 {
            case 0: await dashboardText(reader.byte() ?? 0, reader.text())
            case 1: await subscribe(&reader)
            case 2: await deviceFrame(&reader)
            case 3: await deviceText(Int(reader.byte() ?? 0) % 3, reader.text())
            case 4: await reply(&reader)
            case 5: await command(&reader)
            case 6:
                await loop.advanceTime(by: .milliseconds(Int64(reader.byte() ?? 0) * 20))
            case 7: await setWritable(Int(reader.byte() ?? 0) % 2, (reader.byte() ?? 0) % 2 == 0)
            case 8:
                // A device reconnects: the takeover path.
                let index = Int(reader.byte() ?? 0) % 3
                replaced.append(devices[index])
                devices[index] = await connectDevice(index)
            default: await dashboardText(reader.byte() ?? 0, #"{"type":"unsubscribe","id":"s\#((reader.byte() ?? 0) % 3)"}"#)
            }
            await settle()
            await check()
        }
    }

    func finish() async {
        for index in 0..<2 { await setWritable(index, true) }
        await settle()
        await check()
        if ProcessInfo.processInfo.environment["HUB_FUZZ_VERBOSE"] != nil {
            print("session: \(delivered.flatMap(\.values).map(\.count).reduce(0, +)) deliveries, \(store.ids.count) commands, stored \(sink.stored) readings")
        }
        await writer.shutdown()
        await coreServices.triggerGracefulShutdown()
        await coreRun?.value
        for channel in dashboards + devices + replaced { _ = try? await channel.finish() }
        // The loop is not shut down: a replay task may still submit its last page to it
        // (it then sees the subscription gone and stops), and a task submitted to a loop
        // that is shut down leaks its promise. Closed channels leave nothing scheduled.
        // Tasks still in flight (a device's command replies hand their end back to the
        // loop) get a few milliseconds of real time to land: on a busy machine they ran
        // after the last settle, and the task they left on the loop kept the session alive
        // (LeakSanitizer reported the whole core).
        for _ in 0..<3 {
            try? await Task.sleep(for: .milliseconds(1))
            await settle()
        }
    }

    // MARK: - Operations

    func dashboardText(_ which: UInt8, _ text: String) async {
        let channel = dashboards[Int(which) % 2]
        try? await channel.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
    }

    func subscribe(_ reader: inout ProgramReader) async {
        let which = reader.byte() ?? 0
        let patterns = ["*", "d*", "sensor-*", "d1", "*-2", "nothing", "d0"]
        var fields = [#""type":"subscribe""#, #""id":"s\#((reader.byte() ?? 0) % 3)""#]
        let count = 1 + Int(reader.byte() ?? 0) % 3
        fields.append(#""devices":[\#((0..<count).map { _ in "\"\(patterns[Int(reader.byte() ?? 0) % patterns.count])\"" }.joined(separator: ","))]"#)
        let flags = reader.byte() ?? 0
        if flags & 1 != 0 { fields.append(#""metrics":["\#(Self.metrics[Int(reader.byte() ?? 0) % 4])"]"#) }
        if flags & 2 != 0 {
            let rates = ["0.001", "1", "10", "1000", "1e-12", "0", "2.5", "1e308", "\"5\"", "true"]
            fields.append(#""max_rate_hz":\#(rates[Int(reader.byte() ?? 0) % rates.count])"#)
        }
        if flags & 4 != 0 { fields.append(#""since_us":\#(Int64(reader.byte() ?? 0) * 1_000_000)"#) }
        if flags & 8 != 0 { fields.append(#""resume":{"\#(Self.deviceIDs[Int(reader.byte() ?? 0) % 3])":\#(reader.byte() ?? 0)}"#) }
        await dashboardText(which, "{" + fields.joined(separator: ",") + "}")
    }

    func deviceFrame(_ reader: inout ProgramReader) async {
        let index = Int(reader.byte() ?? 0) % 3
        let shape = reader.byte() ?? 0
        // Mostly in order; sometimes a repeat (a duplicate) or a jump (a gap).
        var seq = nextSeq[index]
        if shape % 7 == 0 { seq = seq > 2 ? seq - 2 : 1 } else if shape % 11 == 0 { seq += 5 }
        nextSeq[index] = max(nextSeq[index], seq + 1)
        let readings = (0..<(1 + Int(shape) % 3)).map { offset in
            let name = shape % 13 == 0 ? "extra\(reader.byte() ?? 0)" : Self.metrics[Int(reader.byte() ?? 0) % 4]
            return Reading(name: name, offsetMicros: Int32(offset), value: .f64(Double(reader.byte() ?? 0)))
        }
        let frame = TelemetryFrame(seq: seq, baseTime: 1_000_000 + Int64(seq), readings: readings)
        var bytes = frame.encoded()
        if shape % 17 == 0, !bytes.isEmpty { bytes.removeLast() }  // a bad frame
        try? await devices[index].writeInbound(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: bytes)))
    }

    func deviceText(_ index: Int, _ text: String) async {
        try? await devices[index].writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
    }

    /// A reply to a command the store holds, with a fuzzed result or error.
    func reply(_ reader: inout ProgramReader) async {
        let ids = store.ids
        guard !ids.isEmpty else { return }
        let id = ids[Int(reader.byte() ?? 0) % ids.count]
        let device = store.device(of: id).flatMap { Self.deviceIDs.firstIndex(of: $0) } ?? 0
        let kind = reader.byte() ?? 0
        let payloads = [#""ok":true,"result":{"applied":true}"#, #""ok":false,"error":"x\u0000""#, #""ok":true,"result":{"k\u0000":1}"#,
            #""ok":false,"error":{"deep":[[["\u0000"]]]}"#, #""ok":true,"result":\#(reader.text())"#, #""ok":false,"error":\#(reader.text())"#]
        let text = kind % 5 == 0
            ? #"{"type":"command_ack","id":"\#(id)"}"#
            : #"{"type":"command_result","id":"\#(id)",\#(payloads[Int(kind) % payloads.count])}"#
        await deviceText(device, text)
    }

    func command(_ reader: inout ProgramReader) async {
        let device = Self.deviceIDs[Int(reader.byte() ?? 0) % 3]
        if (reader.byte() ?? 0) % 2 == 0 {
            _ = try? await core.createCommand(device: device, name: "reboot", paramsJSON: "{}", ttlSeconds: 1 + Int(reader.byte() ?? 0))
        } else {
            let ttl = ["1", "300", "0", "1e300", "true", "86401", "2.5"][Int(reader.byte() ?? 0) % 7]
            await dashboardText(0, #"{"type":"command","ref":"r","device":"\#(device)","name":"n","params":{"p":\#(reader.text())},"ttl_s":\#(ttl)}"#)
        }
    }

    func setWritable(_ index: Int, _ writable: Bool) async {
        let channel = dashboards[index]
        guard channel.isWritable != writable else { return }
        channel.isWritable = writable
        channel.pipeline.fireChannelWritabilityChanged()
    }

    // MARK: - Settling and checks

    /// Lets everything in flight land: the loop's tasks, the writer's commits, the command
    /// center's and the replays' tasks.
    /// The messages a dashboard may get, by `type`.
    static let readers: [String: @Sendable (String) throws -> any HubMessage] = [
        Hello.type: { try Hello.decode($0) }, Subscribed.type: { try Subscribed.decode($0) },
        LiveTelemetry.type: { try LiveTelemetry.decode($0) }, ReplayDone.type: { try ReplayDone.decode($0) },
        Presence.type: { try Presence.decode($0) }, CommandStatusMessage.type: { try CommandStatusMessage.decode($0) },
        Lagged.type: { try Lagged.decode($0) }, ErrorMessage.type: { try ErrorMessage.decode($0) }, Pong.type: { try Pong.decode($0) },
    ]

    func settle() async {
        for _ in 0..<3 {
            await loop.run()
            await withCheckedContinuation { continuation in queue.whenWritten { continuation.resume() } }
            await loop.run()
            for _ in 0..<4 { await Task.yield() }
        }
        await loop.run()
    }

    func check() async {
        for (index, channel) in dashboards.enumerated() {
            while let frame = try? await channel.readOutbound(as: WebSocketFrame.self) {
                guard frame.opcode == .text else { continue }
                var data = frame.data
                guard let text = data.readString(length: data.readableBytes), let envelope = MessageEnvelope.read(text),
                    case let type?? = envelope.type, let read = Self.readers[type]
                else { preconditionFailure("a /live message that is not one of the contract's") }
                if Self.verbose { FileHandle.standardError.write(Data("dashboard \(index) <- \(text)\n".utf8)) }
                // Every message the hub writes reads back as its type.
                guard let message = try? read(text) else { preconditionFailure("a \(type) message that does not read: \(text)") }
                switch message {
                case let subscribed as Subscribed:
                    delivered[index][subscribed.id] = []
                case let telemetry as LiveTelemetry:
                    let key = "\(telemetry.device)/\(telemetry.seq)"
                    precondition(
                        delivered[index][telemetry.sub]?.insert(key).inserted ?? true, "subscription \(telemetry.sub) got \(key) twice")
                default:
                    break
                }
            }
        }
        for channel in devices {
            while (try? await channel.readOutbound(as: WebSocketFrame.self)) != nil {}
        }
    }
}

/// Reads a program's bytes: one at a time, or a short text (a length byte, then that many).
private struct ProgramReader {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func byte() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func text() -> String {
        let length = Int(byte() ?? 0) % 48
        let end = min(bytes.count, position + length)
        defer { position = end }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }
}

/// An ingest sink in memory that also answers replays from what it stored.
private final class MemorySink: IngestSink, TelemetryHistory, @unchecked Sendable {
    private let lock = NSLock()
    private var readings: [Int32: [StoredReading]] = [:]
    private var marks: [Int32: UInt64] = [:]

    var stored: Int { lock.withLock { readings.values.map(\.count).reduce(0, +) } }

    func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence> {
        lock.withLock {
            for burst in bursts {
                for accepted in burst.frames {
                    for reading in accepted.frame.readings {
                        readings[burst.device.key, default: []].append(StoredReading(
                            seq: accepted.frame.seq, metric: reading.name,
                            tsMicros: accepted.baseMicros + Int64(reading.offsetMicros), value: reading.value))
                    }
                }
                if let seq = burst.highestSeq { marks[burst.device.key] = max(marks[burst.device.key] ?? 0, seq) }
            }
        }
        return []
    }

    func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64] {
        lock.withLock { marks.filter { deviceKeys.contains($0.key) } }
    }

    func page(deviceKey: Int32, afterSeq: UInt64, sinceMicros: Int64?, metrics: Set<String>?) async throws -> [StoredReading] {
        lock.withLock {
            let matching = (readings[deviceKey] ?? []).filter {
                $0.seq > afterSeq && $0.tsMicros >= (sinceMicros ?? 0) && (metrics?.contains($0.metric) ?? true)
            }.sorted { $0.seq < $1.seq }
            // Small pages, so replays take several.
            guard let cut = matching.prefix(4).last?.seq else { return [] }
            return matching.filter { $0.seq <= cut }
        }
    }
}

/// A command store in memory that checks what PostgreSQL would refuse.
private final class MemoryCommandStore: CommandStore, @unchecked Sendable {
    private let lock = NSLock()
    private var rows: [String: Command] = [:]

    var ids: [String] { lock.withLock { rows.keys.sorted() } }

    func device(of id: String) -> String? { lock.withLock { rows[id]?.device } }

    func save(_ command: Command, isNew: Bool, done: (@Sendable (Error?) -> Void)?) {
        for text in [command.name, command.paramsJSON, command.resultJSON ?? "", command.error ?? ""] {
            precondition(!Self.holdsNUL(text), "a command row with U+0000 reached the store: \(command)")
        }
        lock.withLock { rows[command.id] = command }
        done?(nil)
    }

    func command(id: String) async throws -> Command? { lock.withLock { rows[id] } }

    func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command] {
        lock.withLock { Array(rows.values.filter { $0.device == device && (status == nil || $0.status == status) }.prefix(limit)) }
    }

    func unfinished() async throws -> [Command] { lock.withLock { rows.values.filter { !$0.status.isFinal } } }

    /// U+0000 in the text, or in a JSON text's strings and keys once parsed.
    static func holdsNUL(_ text: String) -> Bool {
        if text.utf8.contains(0) { return true }
        return text.contains("\\u0000") && JSONValue.parse(text)?.containsNUL == true
    }
}
