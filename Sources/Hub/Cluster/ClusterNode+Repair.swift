import HubIngest
import HubProtocol
import HubTransport

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
        for (device, after) in targets { frames += await repairStream(device, after: after, fanout: fanout) }
        logger.info("cluster: live streams repaired after a NATS reconnect", metadata: ["devices": "\(targets.count)", "frames": "\(frames)"])
    }

    /// A followed device came online in a newer session (`ClusterLink`): its repair waits
    /// its turn behind the others (at most one per device is under way).
    func repairStream(_ device: DeviceRecordRef, after seq: UInt64) {
        takeoverRepairs.continuation.yield((device, seq))
    }

    /// Runs the repairs that takeovers ask for, one at a time, until the stream ends.
    func repairTakeovers() async {
        guard let fanout = fanout.withLockedValue({ $0 }) else { return }
        for await (device, after) in takeoverRepairs.stream {
            let frames = await repairStream(device, after: after, fanout: fanout)
            if frames > 0 {
                logger.info("cluster: a device's live stream repaired after it moved", metadata: ["device": "\(device.id)", "frames": "\(frames)"])
            }
        }
    }

    /// Reads back the device's frames after `after` and fans out those not fanned out yet,
    /// then the frames held meanwhile. - Returns: the frames read back.
    private func repairStream(_ device: DeviceRecordRef, after: UInt64, fanout: LiveFanout) async -> Int {
        var (cursor, frames) = (after, 0)
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
        return frames
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
