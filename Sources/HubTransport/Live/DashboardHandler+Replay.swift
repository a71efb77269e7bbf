import HubIngest
import HubProtocol
import NIOCore

/// Live events held for a subscription while its history replays.
struct ReplayBuffer {
    let resume: [String: UInt64]
    private(set) var events: [LiveEvent] = []
    private var bytes = 0
    /// Past the byte bound, readings are conflated here (newest per device and metric).
    private(set) var overflow: [Outbox.Key: ConflatedReading] = [:]
    private(set) var dropped = 0

    init(resume: [String: UInt64]) {
        self.resume = resume
    }

    mutating func hold(_ event: LiveEvent, maxBytes: Int) {
        guard case .telemetry(let subscription, let device, let frame, let made) = event,
            let text = made ?? LiveEvent.text(subscription, device: device, frame: frame)
        else { return }
        if overflow.isEmpty && bytes + text.utf8.count <= maxBytes {
            events.append(.telemetry(subscription: subscription, device: device, frame: frame, text: text))
            bytes += text.utf8.count
            return
        }
        for reading in subscription.readings(of: frame) {
            let key = Outbox.Key(sub: subscription.id, device: device, metric: reading.metric)
            if overflow.updateValue(reading, forKey: key) != nil { dropped += 1 }
        }
    }

    /// Readings conflated before they reached the buffer (in a loop's mailbox).
    mutating func addDropped(_ count: Int) {
        dropped += count
    }
}

/// History replay with a gap-free, repeat-free handover to live events.
///
/// Order matters: live events for the subscription are buffered from the moment it is
/// registered; the replay then waits until every frame accepted before that moment is
/// committed (`IngestQueue.whenWritten`), so the database holds everything not buffered.
/// Buffered events at or below the last replayed (or resumed) seq of their device are
/// dropped as repeats.
extension DashboardHandler {
    func startReplay(_ subscription: LiveSubscription, since: Int64?, resume: [String: UInt64]) {
        let targets = environment.registry.records
            .filter { record in subscription.patterns.contains { $0.matches(record.id) } }
            .filter { since != nil || resume[$0.id] != nil }
            .sorted { $0.id < $1.id }
        requestsInFlight += 1
        replaysInFlight += 1
        environment.queue.whenWritten { [self] in
            environment.fanout.clusterBarrier { [self] in
                // Refused only while the hub stops, when this connection is closing anyway.
                _ = environment.runner.submit { await self.replay(subscription, targets: targets, since: since, resume: resume) }
            }
        }
    }

    private func replay(_ subscription: LiveSubscription, targets: [DeviceRecord], since: Int64?, resume: [String: UInt64]) async {
        var replayed: [String: UInt64] = [:]
        do {
            pages: for target in targets {
                let resumeSeq = resume[target.id]
                var after = resumeSeq ?? 0
                while true {
                    let page = try await environment.history.page(
                        deviceKey: target.key, afterSeq: after, sinceMicros: resumeSeq == nil ? since : nil,
                        metrics: subscription.metrics)
                    guard let last = page.last else { break }
                    // Written out a chunk at a time, each on the socket before the next: memory
                    // stays at one page, and the socket's share at one chunk. A subscription
                    // replaced, removed or closed meanwhile stops the replay.
                    for chunk in Self.chunks(Self.messages(page, sub: subscription.id, device: target.id)) {
                        let current = try await eventLoop.flatSubmit { [self] () -> EventLoopFuture<Bool> in
                            guard let waiting = context else { return eventLoop.makeSucceededFuture(false) }
                            return whenOutboxIdle(context: waiting).flatMap { [self] () -> EventLoopFuture<Bool> in
                                guard let context, subscriptions[subscription.id] === subscription, !closing else {
                                    return eventLoop.makeSucceededFuture(false)
                                }
                                for message in chunk.dropLast() { send(message, context: context) }
                                environment.metrics.deliveries.increment(by: Int64(chunk.count))
                                return sendAndFlush(chunk.last ?? "", context: context).map { true }
                            }
                        }.get()
                        guard current else { break pages }
                    }
                    after = last.seq
                    replayed[target.id] = last.seq
                }
            }
        } catch {
            logger.warning("replay failed", metadata: ["error": "\(error)"])
            let why = (error as? StorageFailure).map { "\($0)" } ?? "history could not be read"
            eventLoop.execute { [self] in
                if let context, subscriptions[subscription.id] === subscription {
                    sendError("replay_failed", "\(why); live events follow", context: context)
                }
            }
        }
        eventLoop.execute { [self] in
            replaysInFlight -= 1
            requestDone()
            finishReplay(subscription, replayed: replayed)
        }
    }

    /// Sends `replay_done`, then the buffered live events that are not repeats.
    private func finishReplay(_ subscription: LiveSubscription, replayed: [String: UInt64]) {
        guard let context, subscriptions[subscription.id] === subscription,
            let buffer = replays.removeValue(forKey: subscription.id)
        else { return }
        func seen(_ device: String) -> UInt64 { max(replayed[device] ?? 0, buffer.resume[device] ?? 0) }
        emit(control: ReplayDone(sub: subscription.id).json, context: context)
        deliver(buffer.events.filter { event in
            guard case .telemetry(_, let device, let frame, _) = event else { return true }
            return frame.frame.seq > seen(device)
        })
        // Where the fan-out here has fanned out the device but not reached what the replay
        // read, a takeover's repair (which starts from that highest seq) may bring it live
        // later (cluster mode): keep the replay's seq to drop it then. A device never fanned
        // out here gets no repair, so no entry: memory stays at the devices with such a gap.
        let fanout = environment.fanout
        let floors = fanout.isClustered ? replayed.filter { id, seq in
            environment.registry.record(id: id).flatMap { fanout.highestFannedOut(key: $0.key) }.map { $0 < seq } ?? false
        } : [:]
        if !floors.isEmpty { replayFloors[subscription.id] = floors }
        let overflow = buffer.overflow.filter { $0.value.seq > seen($0.key.device) }
        for message in Outbox.messages(overflow, isSubscribed: { _ in true }) { emit(control: message, context: context) }
        if buffer.dropped > 0 { emit(control: Lagged(sub: subscription.id, dropped: buffer.dropped).json, context: context) }
        flushOut(context)
    }

    /// Bytes of replay messages written before waiting for the socket to take them.
    static let chunkBytes = 1 << 20

    /// `messages` in runs of about `chunkBytes`.
    static func chunks(_ messages: [String]) -> [[String]] {
        var chunks: [[String]] = [[]]
        var bytes = 0
        for message in messages {
            if bytes > 0 && bytes + message.utf8.count > chunkBytes {
                chunks.append([])
                bytes = 0
            }
            chunks[chunks.count - 1].append(message)
            bytes += message.utf8.count
        }
        return chunks.filter { !$0.isEmpty }
    }

    /// Stored readings as telemetry messages, one per frame.
    static func messages(_ readings: [StoredReading], sub: String, device: String) -> [String] {
        var messages: [String] = []
        var start = readings.startIndex
        let prefix = TelemetryJSON.prefix(sub: sub)
        while start < readings.endIndex {
            let seq = readings[start].seq
            let end = readings[start...].firstIndex { $0.seq != seq } ?? readings.endIndex
            if let body = TelemetryJSON.body(
                device: device, seq: seq,
                readings: readings[start..<end].map { (metric: $0.metric, tsMicros: $0.tsMicros, value: $0.value) })
            {
                messages.append(prefix + body)
            }
            start = end
        }
        return messages
    }
}
