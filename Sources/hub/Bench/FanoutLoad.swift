import Foundation
import Histogram
import HubClient
import HubIngest
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// P publishing devices and S dashboards subscribed to all of them. Each frame carries its
/// send time as base_time, so a dashboard's latency is its receive time minus `ts_us`.
final class FanoutLoad: @unchecked Sendable {
    struct Result {
        var deliveriesPerSecond: Double
        var framesPerSecond: Double
        var p50Millis: Double
        var p99Millis: Double
        var maxMillis: Double
        var hubCPU: Double?
        var hubRSS: Int?
    }

    let publishers: Int
    let subscribers: Int
    /// Offered deliveries per second in total; 0 means as fast as acks allow.
    let offeredDeliveries: Int
    /// The tool's own client threads.
    private let group: MultiThreadedEventLoopGroup
    private var devices: [DeviceClient] = []
    private var dashboards: [LiveClient] = []
    private let stats = FanoutStats()
    private let running = NIOLockedValueBox(true)

    init(publishers: Int, subscribers: Int, offeredDeliveries: Int, clientThreads: Int) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: clientThreads)
        self.publishers = publishers
        self.subscribers = subscribers
        self.offeredDeliveries = offeredDeliveries
    }

    /// Dashboards connect to `host`:`port`; devices too, or to `devices` (another node of a
    /// cluster, for the cross-node path).
    func connect(host: String, port: Int, token: String, devices deviceNode: (host: String, port: Int)? = nil) async throws {
        let run = UUID().uuidString.prefix(6)
        let stats = self.stats
        // Sample latency on every message at fixed rates, on one in 16 when saturating.
        let sampleMask: UInt64 = offeredDeliveries > 0 ? 0 : 15
        for index in 0..<subscribers {
            let counter = NIOLockedValueBox<UInt64>(0)
            let dashboard = try await LiveClient.connect(
                host: host, port: port, token: token, group: group,
                onBytes: { buffer in
                    let count = counter.withLockedValue { $0 += 1; return $0 }
                    stats.delivered(sampleLatencyOf: count & sampleMask == 0 ? buffer : nil)
                })
            dashboard.send(Subscribe(id: "b\(index)", devices: ["fan-\(run)-*"]).json)
            dashboards.append(dashboard)
        }
        try await Task.sleep(for: .milliseconds(200))
        for index in 0..<publishers {
            devices.append(try await DeviceClient.connect(
                host: deviceNode?.host ?? host, port: deviceNode?.port ?? port, deviceID: "fan-\(run)-\(index)", token: nil, group: group,
                onEvent: { [stats] event in if case .ack(let seq) = event { stats.acked(seq, device: index) } }))
        }
    }

    func run(warmUp: Duration, measure: Duration, cpu: CPUProbe?) async throws -> Result {
        let framesPerSecond = offeredDeliveries > 0 ? Double(offeredDeliveries) / Double(max(1, subscribers)) : 0
        for (index, device) in devices.enumerated() {
            startPublishing(device, index: index, framesPerSecond: framesPerSecond / Double(publishers))
        }
        try await Task.sleep(for: warmUp)
        stats.startMeasuring()
        let cpuStart = cpu?.sample()
        let (deliveredStart, publishedStart) = stats.counts
        let start = ContinuousClock.now
        try await Task.sleep(for: measure)
        let (deliveredEnd, publishedEnd) = stats.counts
        let elapsed = ContinuousClock.now - start
        let cpuEnd = cpu?.sample()
        let rss = cpu?.hubRSS()
        let histogram = stats.stopMeasuring()
        running.withLockedValue { $0 = false }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let usage = cpuStart.flatMap { start in cpuEnd.map { CPUProbe.usage(from: start, to: $0) } }
        return Result(
            deliveriesPerSecond: Double(deliveredEnd - deliveredStart) / seconds,
            framesPerSecond: Double(publishedEnd - publishedStart) / seconds,
            p50Millis: Double(histogram.valueAtPercentile(50)) / 1000, p99Millis: Double(histogram.valueAtPercentile(99)) / 1000,
            maxMillis: Double(histogram.max) / 1000, hubCPU: usage?.hub, hubRSS: rss)
    }

    /// Sends frames on the device's event loop: paced every millisecond at a fixed rate,
    /// or keeping 32 frames in flight when saturating.
    private func startPublishing(_ device: DeviceClient, index: Int, framesPerSecond: Double) {
        let loop = device.channel.eventLoop
        let running = self.running
        let stats = self.stats
        var seq = device.welcome.lastSeq
        var frame = TelemetryFrame(seq: 1, baseTime: 1, readings: [Reading(name: "value", value: .f64(1))]).encoded()
        func send() {
            seq += 1
            withUnsafeBytes(of: seq.bigEndian) { for i in 0..<8 { frame[2 + i] = $0[i] } }
            withUnsafeBytes(of: UInt64(WallClock.nowMicros()).bigEndian) { for i in 0..<8 { frame[10 + i] = $0[i] } }
            device.sendBinary(frame, flush: false)
            stats.published()
        }
        if framesPerSecond > 0 {
            // A random phase, so devices do not all send in the same millisecond.
            var credit = Double.random(in: 0..<1)
            var last = NIODeadline.now()
            loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { task in
                guard running.withLockedValue({ $0 }) else { task.cancel(); return }
                // Credit by elapsed time: timer ticks drift, the offered rate must not.
                let now = NIODeadline.now()
                credit += framesPerSecond * Double((now - last).nanoseconds) / 1e9
                last = now
                while credit >= 1 {
                    send()
                    credit -= 1
                }
                device.flush()
            }
        } else {
            loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .microseconds(200)) { task in
                guard running.withLockedValue({ $0 }) else { task.cancel(); return }
                while seq < stats.ackedSeq(device: index) + 32 { send() }
                device.flush()
            }
        }
    }

    func disconnect() async {
        for device in devices { await device.close() }
        for dashboard in dashboards { await dashboard.close() }
        try? await group.shutdownGracefully()
    }
}

private final class FanoutStats: @unchecked Sendable {
    private let lock = NIOLock()
    private var deliveredCount = 0
    private var publishedCount = 0
    private var acks: [Int: UInt64] = [:]
    private var measuring = false
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private static let marker = Array(#""ts_us":"#.utf8)

    var counts: (delivered: Int, published: Int) { lock.withLock { (deliveredCount, publishedCount) } }

    func delivered(sampleLatencyOf buffer: ByteBuffer?) {
        let latency = buffer.flatMap(Self.latencyMicros)
        lock.withLock {
            deliveredCount += 1
            if measuring, let latency { _ = histogram.record(latency) }
        }
    }

    func published() { lock.withLock { publishedCount += 1 } }

    func acked(_ seq: UInt64, device: Int) { lock.withLock { acks[device] = max(acks[device] ?? 0, seq) } }

    func ackedSeq(device: Int) -> UInt64 { lock.withLock { acks[device] ?? 0 } }

    func startMeasuring() { lock.withLock { measuring = true } }

    func stopMeasuring() -> Histogram<UInt64> { lock.withLock { measuring = false; return histogram } }

    /// Receive time minus the message's first `ts_us`, without parsing the JSON.
    static func latencyMicros(_ buffer: ByteBuffer) -> UInt64? {
        let now = WallClock.nowMicros()
        return buffer.withUnsafeReadableBytes { bytes -> UInt64? in
            guard let start = bytes.firstRange(of: marker)?.upperBound else { return nil }
            var value: Int64 = 0
            var index = start
            while index < bytes.count, (48...57).contains(bytes[index]) {
                value = value * 10 + Int64(bytes[index] - 48)
                index += 1
            }
            return UInt64(max(1, now - value))
        }
    }
}
