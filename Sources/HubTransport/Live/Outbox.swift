import HubProtocol

/// What a dashboard has not been able to take yet: the slow-consumer policy, as a value
/// type with no I/O.
///
/// While the socket is writable events pass straight through. Otherwise they queue, up to
/// `maxBytes`; past that, telemetry is conflated: the newest reading per (subscription,
/// device, metric) is kept and every reading it replaces is counted. Once the socket
/// drains, the queue goes out, then the conflated readings (one message per frame), then
/// `lagged` with the counts. A dashboard stalled for longer than `stallLimitNanos` is closed.
struct Outbox {
    /// One (subscription, device, metric), for the rate limiter and replay overflow.
    struct Key: Hashable {
        var sub: String
        var device: String
        var metric: String
    }

    /// Where conflated readings come from; each holds the newest reading per metric.
    struct Source: Hashable {
        var sub: String
        var device: String
    }

    enum Decision: Equatable {
        case write
        case held
        case closeSlowConsumer
    }

    private var queued: [String] = []
    private var head = 0
    private(set) var queuedBytes = 0
    private var conflated: [Source: [String: ConflatedReading]] = [:]
    private var dropped: [String: Int] = [:]
    private var droppedSinceTaken = 0
    private var stalledSince: UInt64?

    var isIdle: Bool { head == queued.count && conflated.isEmpty }
    /// Telemetry is being conflated (until the next full drain).
    var isConflating: Bool { !conflated.isEmpty }

    /// Readings replaced by newer ones since the last call.
    mutating func takeNewlyDropped() -> Int {
        defer { droppedSinceTaken = 0 }
        return droppedSinceTaken
    }

    /// A control message (hello, presence, errors…): written, or queued in order.
    mutating func offer(control text: String, writable: Bool, nowNanos: UInt64, maxBytes: Int, stallLimitNanos: UInt64) -> Decision {
        if isIdle && writable { return .write }
        if stalled(nowNanos, limit: stallLimitNanos) || queuedBytes > 2 * maxBytes { return .closeSlowConsumer }
        enqueue(text)
        return .held
    }

    /// A telemetry message: written (the caller makes `text` then), queued, or conflated
    /// into its readings. While conflating, `text` is never made.
    mutating func offer(
        telemetry text: () -> String?, sub: String, device: String, readings: () -> [ConflatedReading], writable: Bool,
        nowNanos: UInt64, maxBytes: Int, stallLimitNanos: UInt64
    ) -> Decision {
        if isIdle && writable { return .write }
        if stalled(nowNanos, limit: stallLimitNanos) { return .closeSlowConsumer }
        if conflated.isEmpty, let text = text(), queuedBytes + text.utf8.count <= maxBytes {
            enqueue(text)
        } else {
            var replaced = 0
            conflated[Source(sub: sub, device: device), default: [:]].merge(readings().lazy.map { ($0.metric, $0) }) { _, newer in
                replaced += 1
                return newer
            }
            if replaced > 0 {
                dropped[sub, default: 0] += replaced
                droppedSinceTaken += replaced
            }
        }
        return .held
    }

    /// Readings conflated before they reached this outbox (in a loop's mailbox): counted
    /// into its own `lagged` if it is conflating now. - Returns: whether they were.
    mutating func addDropped(sub: String, count: Int) -> Bool {
        guard isConflating else { return false }
        dropped[sub, default: 0] += count
        return true
    }

    /// Sends what waits while `write` reports the socket still writable. Conflated readings
    /// and `lagged` follow only once the queue is empty.
    /// - Returns: how many conflated readings were reported as dropped.
    @discardableResult
    mutating func drain(isSubscribed: (String) -> Bool, write: (String) -> Bool) -> Int {
        while head < queued.count {
            let text = queued[head]
            queued[head] = ""
            head += 1
            queuedBytes -= text.utf8.count
            if !write(text) { break }
        }
        if head == queued.count {
            queued.removeAll(keepingCapacity: true)
            head = 0
        } else {
            return 0
        }
        for message in Self.messages(conflated, isSubscribed: isSubscribed) { _ = write(message) }
        conflated = [:]
        var reported = 0
        for (sub, count) in dropped.sorted(by: { $0.key < $1.key }) where isSubscribed(sub) {
            _ = write(Lagged(sub: sub, dropped: count).json)
            reported += count
        }
        dropped = [:]
        stalledSince = nil
        return reported
    }

    /// Drops what is conflated for subscription `sub`, when it is removed or replaced: a
    /// new subscription with the same id must not get the old one's readings.
    mutating func forget(sub: String) {
        conflated = conflated.filter { $0.key.sub != sub }
        dropped[sub] = nil
    }

    static func messages(_ readings: [Key: ConflatedReading], isSubscribed: (String) -> Bool) -> [String] {
        var grouped: [Source: [String: ConflatedReading]] = [:]
        for (key, reading) in readings { grouped[Source(sub: key.sub, device: key.device), default: [:]][key.metric] = reading }
        return messages(grouped, isSubscribed: isSubscribed)
    }

    /// Readings grouped back into one telemetry message per (subscription, device, seq).
    static func messages(_ readings: [Source: [String: ConflatedReading]], isSubscribed: (String) -> Bool) -> [String] {
        var frames: [FrameKey: [ConflatedReading]] = [:]
        for (source, latest) in readings where isSubscribed(source.sub) {
            for reading in latest.values {
                frames[FrameKey(sub: source.sub, device: source.device, seq: reading.seq), default: []].append(reading)
            }
        }
        return frames.sorted { ($0.key.seq, $0.key.device, $0.key.sub) < ($1.key.seq, $1.key.device, $1.key.sub) }.compactMap { key, readings in
            TelemetryJSON.body(
                device: key.device, seq: key.seq,
                readings: readings.sorted { $0.metric < $1.metric }.map { (metric: $0.metric, tsMicros: $0.tsMicros, value: $0.value) }
            ).map { TelemetryJSON.prefix(sub: key.sub) + $0 }
        }
    }

    private struct FrameKey: Hashable {
        var sub: String
        var device: String
        var seq: UInt64
    }

    private mutating func enqueue(_ text: String) {
        queued.append(text)
        queuedBytes += text.utf8.count
    }

    private mutating func stalled(_ now: UInt64, limit: UInt64) -> Bool {
        guard let since = stalledSince else {
            stalledSince = now
            return false
        }
        return now &- since > limit
    }
}
