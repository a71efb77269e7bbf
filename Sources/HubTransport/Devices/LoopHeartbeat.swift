import NIOConcurrencyHelpers
import NIOCore

/// The heartbeat of every device connection on one event loop: one repeated task per
/// loop instead of one per connection, whose timer, closure and scheduled entry an idle
/// connection would otherwise hold. Each connection beats once every `heartbeat_s`: ping,
/// or close if silent for more than two intervals. The connections are spread over the
/// interval in slots (by their identity's hash), one slot per tick of `tick` (250 ms), so
/// a loop holding thousands of devices pings a few at a time: beating 5,000 at once held
/// the loop (its HTTP answers, acks, other sockets) for seconds in a debug build. A
/// connection joins at its welcome, so its first ping comes within one interval of it,
/// and a silent one is closed two to three intervals after it was last heard.
///
/// Touched on its loop only.
final class LoopHeartbeat: @unchecked Sendable {
    static let tick = TimeAmount.milliseconds(250)

    private let loop: EventLoop
    private let interval: TimeAmount
    /// The members, by slot; the task beats one slot per tick, in turn.
    private var slots: [[ObjectIdentifier: DeviceHandler]]
    private var members = 0
    private var next = 0
    private var task: RepeatedTask?

    init(loop: EventLoop, interval: TimeAmount) {
        self.loop = loop
        self.interval = interval
        slots = Array(repeating: [:], count: max(1, Int(interval.nanoseconds / Self.tick.nanoseconds)))
    }

    private func slot(_ id: ObjectIdentifier) -> Int {
        Int(UInt(bitPattern: id.hashValue) % UInt(slots.count))
    }

    func add(_ handler: DeviceHandler) {
        loop.preconditionInEventLoop()
        let id = ObjectIdentifier(handler)
        if slots[slot(id)].updateValue(handler, forKey: id) == nil { members += 1 }
        guard task == nil else { return }
        let every = TimeAmount.nanoseconds(interval.nanoseconds / Int64(slots.count))
        task = loop.scheduleRepeatedTask(initialDelay: every, delay: every) { [self] _ in
            let due = slots[next]
            next = (next + 1) % slots.count
            for member in due.values { member.beat(intervalNanos: UInt64(interval.nanoseconds)) }
        }
    }

    /// Leaves; the loop's task stops with its last member.
    func remove(_ handler: DeviceHandler) {
        loop.preconditionInEventLoop()
        let id = ObjectIdentifier(handler)
        guard slots[slot(id)].removeValue(forKey: id) != nil else { return }
        members -= 1
        guard members == 0 else { return }
        task?.cancel()
        task = nil
        next = 0
    }
}

/// One `LoopHeartbeat` per event loop, made on first use.
final class Heartbeats: Sendable {
    private let interval: TimeAmount
    private let loops = NIOLockedValueBox<[ObjectIdentifier: LoopHeartbeat]>([:])

    init(intervalSeconds: Int) {
        interval = .seconds(Int64(intervalSeconds))
    }

    func on(_ loop: EventLoop) -> LoopHeartbeat {
        loops.withLockedValue { loops in
            if let heartbeat = loops[ObjectIdentifier(loop)] { return heartbeat }
            let heartbeat = LoopHeartbeat(loop: loop, interval: interval)
            loops[ObjectIdentifier(loop)] = heartbeat
            return heartbeat
        }
    }
}
