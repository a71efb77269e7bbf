import NIOConcurrencyHelpers
import NIOCore

/// The heartbeat of every device connection on one event loop: one repeated task per
/// loop instead of one per connection, whose timer, closure and scheduled entry an idle
/// connection would otherwise hold. Each tick, every `heartbeat_s`, asks each connection of
/// the loop to beat: ping, or close if silent for more than two intervals. A connection
/// joins at its welcome, so its first ping comes within one interval of it.
///
/// Touched on its loop only.
final class LoopHeartbeat: @unchecked Sendable {
    private let loop: EventLoop
    private let interval: TimeAmount
    private var members: [ObjectIdentifier: DeviceHandler] = [:]
    private var task: RepeatedTask?

    init(loop: EventLoop, interval: TimeAmount) {
        self.loop = loop
        self.interval = interval
    }

    func add(_ handler: DeviceHandler) {
        loop.preconditionInEventLoop()
        members[ObjectIdentifier(handler)] = handler
        guard task == nil else { return }
        task = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            for member in Array(members.values) { member.beat(intervalNanos: UInt64(interval.nanoseconds)) }
        }
    }

    /// Leaves; the loop's task stops with its last member.
    func remove(_ handler: DeviceHandler) {
        loop.preconditionInEventLoop()
        guard members.removeValue(forKey: ObjectIdentifier(handler)) != nil, members.isEmpty else { return }
        task?.cancel()
        task = nil
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
