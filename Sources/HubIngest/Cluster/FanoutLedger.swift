/// What one node has fanned out per device, and the streams it is repairing from history
/// (cluster mode): the value type behind `LiveFanout`'s "each seq once, in order".
///
/// A frame can reach a node twice (a dead node forwarded it, the device resent it), so only
/// frames above the device's highest seq fanned out go on. While a device's stream is
/// repaired (its old node may have committed frames it never forwarded), its newer frames
/// are held; the repair fans out what history has, then ends, and the held frames follow.
///
/// The end of a repair runs on the event loop that held the device's frames last (`Loop`,
/// an event loop, compared by identity: the device's own loop for a device connected here): the held frames and that loop's
/// next frames then go out from one thread, in order, and the highest seq moves in the same
/// step that stops holding, so no frame published meanwhile can lift it over the held
/// ones. Memory: one entry per device that sent since start, plus at most `maxHeld` held
/// frames in all (more are dropped and counted; history has them).
public struct FanoutLedger<Loop> {
    fileprivate struct Repair {
        var frames: [AcceptedFrame] = []
        /// The loop that held frames last; `nil` while none are held.
        var holder: Loop?
    }

    private var highest: [Int32: (id: String, seq: UInt64)] = [:]
    private var repairing: [Int32: Repair] = [:]
    private var held = 0
    public let maxHeld: Int

    public init(maxHeld: Int = 100_000) {
        self.maxHeld = maxHeld
    }

    /// What to do with frames offered.
    public enum Offer {
        /// Publish those of `frames` above `floor` (`fresh(_:above:)`).
        case publish(above: UInt64)
        /// They wait for the repair; `dropped` did not fit.
        case held(dropped: Int)
    }

    /// Frames of `device`, from `loop`. With `hold`, they wait while the device's stream is
    /// repaired; otherwise (frames a repair read back) they go on at once.
    public mutating func offer(_ device: DeviceRecordRef, _ frames: [AcceptedFrame], from loop: Loop, hold: Bool) -> Offer {
        guard let top = frames.lazy.map(\.frame.seq).max() else { return .publish(above: .max) }
        if hold, repairing[device.key] != nil {
            let room = max(0, maxHeld - held)
            let kept = min(room, frames.count)
            repairing[device.key]!.frames += frames.prefix(kept)
            repairing[device.key]!.holder = loop
            held += kept
            return .held(dropped: frames.count - kept)
        }
        return .publish(above: raise(device, to: top))
    }

    /// Sets the device's highest seq to at least `top`. - Returns: what it was (0 if none).
    private mutating func raise(_ device: DeviceRecordRef, to top: UInt64) -> UInt64 {
        let floor = highest[device.key]?.seq ?? 0
        highest[device.key] = (device.id, max(floor, top))
        return floor
    }

    /// `frames` above `floor`, without any that does not follow the one before it (so no
    /// seq goes out twice, even from one call).
    public static func fresh(_ frames: [AcceptedFrame], above floor: UInt64) -> [AcceptedFrame] {
        guard let first = frames.first else { return [] }
        if zip(frames, frames.dropFirst()).allSatisfy({ $0.frame.seq < $1.frame.seq }) {
            return first.frame.seq > floor ? frames : frames.filter { $0.frame.seq > floor }
        }
        var floor = floor
        return frames.filter { frame in
            guard frame.frame.seq > floor else { return false }
            floor = frame.frame.seq
            return true
        }
    }

    /// Starts repairing the device's stream, unless one is under way or nothing of it was
    /// fanned out here. - Returns: the highest seq fanned out, where the repair reads on.
    public mutating func beginRepair(key: Int32) -> UInt64? {
        guard let known = highest[key], repairing[key] == nil else { return nil }
        repairing[key] = Repair()
        return known.seq
    }

    /// Holds the frames of these devices from now on, as repairs begin (a NATS outage);
    /// a repair under way goes on.
    public mutating func beginRepairs(keys: some Sequence<Int32>) {
        for key in keys where repairing[key] == nil { repairing[key] = Repair() }
    }

    /// How a repair ends.
    public enum End {
        /// Held frames go out, those above `floor`; the device's frames no longer wait.
        case publish([AcceptedFrame], above: UInt64)
        /// Ask again on this loop, the one that held the device's frames last.
        case moveTo(Loop)
    }

    /// The repair of `device` has fanned out its history; asked on `loop`.
    public mutating func endRepair(_ device: DeviceRecordRef, on loop: Loop) -> End {
        guard let repair = repairing[device.key] else { return .publish([], above: .max) }
        if let holder = repair.holder, (holder as AnyObject) !== (loop as AnyObject) { return .moveTo(holder) }
        repairing[device.key] = nil
        held -= repair.frames.count
        guard let top = repair.frames.lazy.map(\.frame.seq).max() else { return .publish([], above: .max) }
        return .publish(repair.frames, above: raise(device, to: top))
    }

    /// The highest seq of the device fanned out here; `nil` if none.
    public func highest(key: Int32) -> UInt64? {
        highest[key]?.seq
    }

    /// Every device fanned out here, with its highest seq.
    public var devices: [(device: DeviceRecordRef, seq: UInt64)] {
        highest.map { (DeviceRecordRef(key: $0.key, id: $0.value.id), $0.value.seq) }
    }

    /// Frames held for repairs, in all.
    public var heldFrames: Int { held }
}

extension FanoutLedger: Sendable where Loop: Sendable {}
extension FanoutLedger.Repair: Sendable where Loop: Sendable {}
