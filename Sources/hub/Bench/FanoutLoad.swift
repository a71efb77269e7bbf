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
        /// A device's send of a frame to its ack (after the commit), every frame.
        var ackP50Millis: Double
        var ackP99Millis: Double
        /// `lagged` messages the dashboards got, and the readings they say were conflated away.
        var laggedMessages: Int
        var conflatedReadings: Int
        var hubCPU: Double?
        /// The hub's resident memory at the end, and the most seen at any half second.
        var hubRSS: Int?
        var hubPeakRSS: Int?
    }

    let publishers: Int
    let subscribers: Int
    /// Offered deliveries per second in total; 0 means as fast as acks allow.
    let offeredDeliveries: Int
    /// The tool's own client threads: for the dashboards, and one for the devices, so their
    /// acks are not read behind the dashboards' deliveries.
    private let group: MultiThreadedEventLoopGroup
    private let deviceGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
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
            let counter = stats.counter()
            let dashboard = try await LiveClient.connect(
                host: host, port: port, token: token, group: group,
                onBytes: { buffer in
                    if let dropped = FanoutStats.laggedCount(buffer) { return stats.lagged(dropped) }
                    // Each dashboard counts on its own; the shared lock is taken only to sample.
                    let count = counter.withLockedValue { $0 += 1; return $0 }
                    if count & sampleMask == 0 { stats.sample(buffer) }
                })
            dashboard.send(Subscribe(id: "b\(index)", devices: ["fan-\(run)-*"]).json)
            dashboards.append(dashboard)
        }
        try await Task.sleep(for: .milliseconds(200))
        for index in 0..<publishers {
            devices.append(try await DeviceClient.connect(
                host: deviceNode?.host ?? host, port: deviceNode?.port ?? port, deviceID: "fan-\(run)-\(index)", token: nil, group: deviceGroup,
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
        var peakRSS = cpu?.hubRSS()
        while ContinuousClock.now - start < measure {
            try await Task.sleep(for: min(.milliseconds(500), measure - (ContinuousClock.now - start)))
            if let rss = cpu?.hubRSS() { peakRSS = max(peakRSS ?? 0, rss) }
        }
        let (deliveredEnd, publishedEnd) = stats.counts
        let elapsed = ContinuousClock.now - start
        let cpuEnd = cpu?.sample()
        let rss = cpu?.hubRSS()
        let (histogram, acks, lagged) = stats.stopMeasuring()
        running.withLockedValue { $0 = false }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let usage = cpuStart.flatMap { start in cpuEnd.map { CPUProbe.usage(from: start, to: $0) } }
        return Result(
            deliveriesPerSecond: Double(deliveredEnd - deliveredStart) / seconds,
            framesPerSecond: Double(publishedEnd - publishedStart) / seconds,
            p50Millis: Double(histogram.valueAtPercentile(50)) / 1000, p99Millis: Double(histogram.valueAtPercentile(99)) / 1000,
            maxMillis: Double(histogram.max) / 1000,
            ackP50Millis: Double(acks.valueAtPercentile(50)) / 1000, ackP99Millis: Double(acks.valueAtPercentile(99)) / 1000,
            laggedMessages: lagged.messages, conflatedReadings: lagged.dropped,
            hubCPU: usage?.hub, hubRSS: rss, hubPeakRSS: peakRSS)
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
            stats.published(seq, device: index)
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
        try? await deviceGroup.shutdownGracefully()
    }
}

private final class FanoutStats: @unchecked Sendable {
    private let lock = NIOLock()
    private var publishedCount = 0
    private var acks: [Int: UInt64] = [:]
    /// Send times (µs) by seq modulo the ring's size, per device: enough for 8,191 frames in flight.
    private var sentAt: [Int: [Int64]] = [:]
    private static let ring = 8192
    private var measuring = false
    private var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private var ackHistogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private var laggedMessages = 0
    private var laggedDropped = 0
    private static let marker = Array(#""ts_us":"#.utf8)

    private var counters: [NIOLockedValueBox<UInt64>] = []

    var counts: (delivered: Int, published: Int) {
        let all = lock.withLock { counters }
        let delivered = all.reduce(0) { $0 + Int($1.withLockedValue { $0 }) }
        return (delivered, lock.withLock { publishedCount })
    }

    /// A dashboard's own count of the messages it got (lagged ones aside).
    func counter() -> NIOLockedValueBox<UInt64> {
        let counter = NIOLockedValueBox<UInt64>(0)
        lock.withLock { counters.append(counter) }
        return counter
    }

    func sample(_ buffer: ByteBuffer) {
        guard let latency = Self.latencyMicros(buffer) else { return }
        lock.withLock { if measuring { _ = histogram.record(latency) } }
    }

    func published(_ seq: UInt64, device: Int) {
        let now = WallClock.nowMicros()
        lock.withLock {
            publishedCount += 1
            sentAt[device, default: Array(repeating: 0, count: Self.ring)][Int(seq % UInt64(Self.ring))] = now
        }
    }

    /// An ack covers every frame up to `seq`: each gets its own latency.
    func acked(_ seq: UInt64, device: Int) {
        let now = WallClock.nowMicros()
        lock.withLock {
            let previous = acks[device] ?? 0
            guard seq > previous else { return }
            acks[device] = seq
            guard measuring, let sent = sentAt[device] else { return }
            for covered in max(previous + 1, seq >= UInt64(Self.ring) ? seq - UInt64(Self.ring) + 1 : 1)...seq {
                let at = sent[Int(covered % UInt64(Self.ring))]
                if at > 0 { _ = ackHistogram.record(UInt64(max(1, now - at))) }
            }
        }
    }

    func lagged(_ dropped: Int) {
        lock.withLock {
            laggedMessages += 1
            laggedDropped += dropped
        }
    }

    func ackedSeq(device: Int) -> UInt64 { lock.withLock { acks[device] ?? 0 } }

    func startMeasuring() { lock.withLock { measuring = true } }

    func stopMeasuring() -> (deliveries: Histogram<UInt64>, acks: Histogram<UInt64>, lagged: (messages: Int, dropped: Int)) {
        lock.withLock {
            measuring = false
            return (histogram, ackHistogram, (laggedMessages, laggedDropped))
        }
    }


    /// Receive time minus the message's first `ts_us`, without parsing the JSON.
    static func latencyMicros(_ buffer: ByteBuffer) -> UInt64? {
        let now = WallClock.nowMicros()
        return buffer.withUnsafeReadableBytes { bytes -> UInt64? in
            guard let start = find(marker, in: bytes) else { return nil }
            return UInt64(max(1, now - Int64(number(in: bytes, at: start))))
        }
    }

    private static let laggedPrefix = Array(#"{"type":"lagged""#.utf8)
    private static let droppedMarker = Array(#""dropped":"#.utf8)

    /// The `dropped` count of a `lagged` message; `nil` for any other message.
    static func laggedCount(_ buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count > laggedPrefix.count, memcmp(bytes.baseAddress!, laggedPrefix, laggedPrefix.count) == 0,
                let start = find(droppedMarker, in: bytes)
            else { return nil }
            return number(in: bytes, at: start)
        }
    }

    /// The index just past the first `needle` in `bytes`, by memchr and memcmp: the tool
    /// must cost far less per message than the hub.
    private static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, bytes.count >= needle.count else { return nil }
        return needle.withUnsafeBytes { wanted -> Int? in
            var at = 0
            while at + needle.count <= bytes.count {
                guard let hit = memchr(base + at, Int32(needle[0]), bytes.count - needle.count + 1 - at) else { return nil }
                at = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(base + at, wanted.baseAddress!, needle.count) == 0 { return at + needle.count }
                at += 1
            }
            return nil
        }
    }

    /// The decimal digits at `index`.
    private static func number(in bytes: UnsafeRawBufferPointer, at index: Int) -> Int {
        var value = 0
        var index = index
        while index < bytes.count, (48...57).contains(bytes[index]) {
            value = value &* 10 &+ Int(bytes[index] - 48)
            index += 1
        }
        return value
    }
}
