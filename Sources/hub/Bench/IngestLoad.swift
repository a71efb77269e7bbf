import Foundation
import Histogram
import HubClient
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Drives D devices, each keeping at most `window` unacked frames in flight, as fast as acks
/// allow or paced to a fixed rate. All per-frame work runs on the devices' event loops: an
/// ack sends the next frames without a task hop.
final class IngestLoad: @unchecked Sendable {
    struct Result {
        var readingsPerSecond: Double
        var framesPerSecond: Double
        var p50Millis: Double
        var p99Millis: Double
        var maxMillis: Double
        var hubCPU: Double?
        var databaseCPU: Double?
        /// The hub's RSS sampled every second while measuring, in bytes.
        var rssSamples: [Int]
    }

    let devices: Int
    let readingsPerFrame: Int
    let window: Int
    /// Frames per second each device sends; `nil`: as fast as acks allow.
    let framesPerSecondPerDevice: Double?
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    private var streams: [DeviceLoad] = []
    /// The devices' ids, in index order.
    private(set) var ids: [String] = []
    fileprivate let stats = LoadStats()

    init(devices: Int, readingsPerFrame: Int, window: Int, framesPerSecondPerDevice: Double? = nil) {
        self.devices = devices
        self.readingsPerFrame = readingsPerFrame
        self.window = window
        self.framesPerSecondPerDevice = framesPerSecondPerDevice
    }

    /// History loading: frame n of device d carries the time `baseTime(d, n)` (µs), and
    /// each device stops after `framesPerDevice`.
    struct History: Sendable {
        var framesPerDevice: UInt64
        var baseTime: @Sendable (_ device: Int, _ frame: UInt64) -> Int64
    }

    var history: History?

    /// Sends every device's history as fast as acks allow. - Returns: when all is acked.
    func loadHistory(progress: @escaping @Sendable (Int) -> Void) async throws {
        guard let history else { return }
        for stream in streams { stream.client!.channel.eventLoop.execute { stream.pump() } }
        let total = Int(history.framesPerDevice) * streams.count
        var lastReport = ContinuousClock.now
        while stats.frames < total {
            try await Task.sleep(for: .milliseconds(200))
            if ContinuousClock.now - lastReport > .seconds(10) {
                progress(stats.frames)
                lastReport = .now
            }
        }
    }

    func connect(host: String, port: Int) async throws {
        let template = TelemetryFrame(
            seq: 1, baseTime: 0,
            readings: (0..<readingsPerFrame).map { Reading(name: "metric.\($0)", offsetMicros: 0, value: .f64(Double($0) + 0.25)) }
        ).encoded()
        let run = UUID().uuidString.prefix(6)
        for index in 0..<devices {
            let stream = DeviceLoad(window: window, template: template, stats: stats, rate: framesPerSecondPerDevice)
            if let history {
                stream.limit = history.framesPerDevice
                stream.baseTime = { history.baseTime(index, $0) }
            }
            ids.append("bench-\(run)-\(index)")
            stream.client = try await DeviceClient.connect(
                host: host, port: port, deviceID: ids[index], token: nil, group: group,
                onEvent: { stream.handle($0) })
            stream.next = stream.client!.welcome.lastSeq + 1
            stream.acked = stream.client!.welcome.lastSeq
            streams.append(stream)
        }
    }

    func run(warmUp: Duration, measure: Duration, cpu: CPUProbe?) async throws -> Result {
        for stream in streams {
            let loop = stream.client!.channel.eventLoop
            if let rate = framesPerSecondPerDevice {
                // A tick per frame a device sends, every 5 ms at most and every second at
                // least, spread over the interval: 10,000 slow devices ticking every 5 ms
                // would busy the tool, not the hub.
                let tick = Int64(min(1_000, max(5, 1_000 / rate)))
                loop.scheduleRepeatedTask(initialDelay: .milliseconds(Int64.random(in: 1...tick)), delay: .milliseconds(tick)) { task in
                    if !stream.running { task.cancel() }
                    stream.tick()
                }
            } else {
                loop.execute { stream.pump() }
            }
        }
        try await Task.sleep(for: warmUp)
        stats.startMeasuring()
        let cpuStart = cpu?.sample()
        let framesStart = stats.frames
        let start = ContinuousClock.now
        var rssSamples: [Int] = []
        while ContinuousClock.now < start + measure {
            if let rss = cpu?.hubRSS() { rssSamples.append(rss) }
            try await Task.sleep(for: min(.seconds(1), start + measure - ContinuousClock.now))
        }
        let frames = stats.frames - framesStart
        let elapsed = ContinuousClock.now - start
        let cpuEnd = cpu?.sample()
        let histogram = stats.stopMeasuring()
        for stream in streams { stream.client!.channel.eventLoop.execute { stream.running = false } }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let usage = cpuStart.flatMap { start in cpuEnd.map { CPUProbe.usage(from: start, to: $0) } }
        return Result(
            readingsPerSecond: Double(frames * readingsPerFrame) / seconds, framesPerSecond: Double(frames) / seconds,
            p50Millis: Double(histogram.valueAtPercentile(50)) / 1000, p99Millis: Double(histogram.valueAtPercentile(99)) / 1000,
            maxMillis: Double(histogram.max) / 1000, hubCPU: usage?.hub, databaseCPU: usage?.database, rssSamples: rssSamples)
    }

    func disconnect() async {
        for stream in streams { await stream.client?.close() }
        try? await group.shutdownGracefully()
    }
}

/// One simulated device; touched only on its connection's event loop.
private final class DeviceLoad: @unchecked Sendable {
    var client: DeviceClient?
    var next: UInt64 = 1
    var acked: UInt64 = 0
    var running = true
    private let window: Int
    private var template: [UInt8]
    private var sentAt: [UInt64]
    private let stats: LoadStats
    /// History mode: the last frame to send, and each frame's time.
    var limit: UInt64?
    var baseTime: ((UInt64) -> Int64)?
    /// Paced mode: frames per second, and the frames this device may send now.
    private let rate: Double?
    private var credit = 0.0
    private var lastTick: UInt64?

    init(window: Int, template: [UInt8], stats: LoadStats, rate: Double?) {
        self.window = window
        self.template = template
        self.stats = stats
        self.rate = rate
        sentAt = Array(repeating: 0, count: window)
    }

    /// Paced mode: adds the credit earned since the last tick (at most 100 ms worth), then sends.
    func tick() {
        guard let rate else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if let last = lastTick { credit = min(credit + Double(now &- last) / 1e9 * rate, max(1, rate / 10)) }
        lastTick = now
        pump()
    }

    func pump() {
        guard running, let client else { return }
        var sent = false
        while next - acked <= UInt64(window), rate == nil || credit >= 1, next <= limit ?? .max {
            if rate != nil { credit -= 1 }
            if let baseTime {
                withUnsafeBytes(of: UInt64(bitPattern: baseTime(next)).bigEndian) { bytes in
                    for index in 0..<8 { template[10 + index] = bytes[index] }
                }
            }
            withUnsafeBytes(of: next.bigEndian) { bytes in
                for index in 0..<8 { template[2 + index] = bytes[index] }
            }
            sentAt[Int(next % UInt64(window))] = DispatchTime.now().uptimeNanoseconds
            client.sendBinary(template, flush: false)
            next += 1
            sent = true
        }
        if sent { client.flush() }
    }

    func handle(_ event: DeviceClient.Event) {
        guard case .ack(let seq) = event, seq > acked else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        var latencies: [UInt64] = []
        latencies.reserveCapacity(Int(seq - acked))
        for frame in (acked + 1)...seq { latencies.append((now &- sentAt[Int(frame % UInt64(window))]) / 1000) }
        stats.record(frames: Int(seq - acked), latenciesMicros: latencies)
        acked = seq
        pump()
    }
}

/// Counts and ack latencies across all devices.
private final class LoadStats: @unchecked Sendable {
    private let lock = NIOLock()
    private var committedFrames = 0
    private var measuring = false
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)

    var frames: Int { lock.withLock { committedFrames } }

    func record(frames: Int, latenciesMicros: [UInt64]) {
        lock.withLock {
            committedFrames += frames
            guard measuring else { return }
            for latency in latenciesMicros { _ = histogram.record(max(1, latency)) }
        }
    }

    func startMeasuring() { lock.withLock { measuring = true } }

    func stopMeasuring() -> Histogram<UInt64> {
        lock.withLock {
            measuring = false
            return histogram
        }
    }
}
