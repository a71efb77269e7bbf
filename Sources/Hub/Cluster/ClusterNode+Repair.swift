import HubIngest
import HubProtocol

/// Repairing live streams after a NATS outage: frames other nodes accepted meanwhile never
/// came, so for every device that dashboards here follow through another node, the frames
/// after the last one fanned out before the outage are read back from PostgreSQL (after a
/// barrier, so they are all there) and fanned out. The frames that arrive from the start
/// of the outage on are held and follow, without repeats. Updates never stop silently
/// behind a reconnect.
extension ClusterNode {
    func repair() async {
        guard let fanout = fanout.withLockedValue({ $0 }) else { return }
        let targets = repairTargets.withLockedValue { targets in
            defer { targets = [:] }
            return Array(targets.values)
        }
        guard !targets.isEmpty else { return }
        // The other nodes come back one by one: wait for each for up to its dead bound and more.
        let bound = configuration.deadAfter.nanoseconds + configuration.barrierTimeout.nanoseconds
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            barrier(within: bound) { continuation.resume() }
        }
        var frames = 0
        for (device, after) in targets {
            var cursor = after
            do {
                while true {
                    let page = try await history.page(deviceKey: device.key, afterSeq: cursor, sinceMicros: nil, metrics: nil)
                    guard let last = page.last else { break }
                    let read = Self.frames(page)
                    try await loop.submit { [loop] in fanout.publishRepaired(device: device, frames: read, on: loop) }.get()
                    frames += read.count
                    cursor = last.seq
                }
            } catch {
                logger.warning("cluster: could not repair a device's live stream", metadata: ["device": "\(device.id)", "error": "\(error)"])
            }
            try? await loop.submit { [loop] in fanout.endRepair(device: device, on: loop) }.get()
        }
        logger.info("cluster: live streams repaired after a NATS reconnect", metadata: ["devices": "\(targets.count)", "frames": "\(frames)"])
    }

    /// Stored readings as the frames they came in (one per seq).
    static func frames(_ readings: [StoredReading]) -> [AcceptedFrame] {
        var frames: [AcceptedFrame] = []
        var start = readings.startIndex
        while start < readings.endIndex {
            let seq = readings[start].seq
            let end = readings[start...].firstIndex { $0.seq != seq } ?? readings.endIndex
            let base = readings[start].tsMicros
            let frame = TelemetryFrame(seq: seq, baseTime: base, readings: readings[start..<end].map {
                Reading(name: $0.metric, offsetMicros: Int32(clamping: $0.tsMicros - base), value: $0.value)
            })
            frames.append(AcceptedFrame(frame: frame, receivedAtMicros: base))
            start = end
        }
        return frames
    }
}
