/// One device connection's state, with no I/O: the welcome after a takeover, frames
/// through the `DeviceStream`, what one read cycle hands to ingest, acks, the frame rate,
/// backpressure, the heartbeat and the drain before a close. The transport's
/// `DeviceHandler` feeds it what the socket and the hub do, with the time, and performs
/// what each method returns; it keeps no state of its own beyond the socket.
///
/// Memory: frames read before the welcome (`held`) or past the frame rate (`deferred`) are
/// kept as copies; both are bounded by one read cycle of the socket (at most
/// `maxMessagesPerRead` reads of at most `maxFrameBytes`), since reading stops at once.
public struct DeviceSession {
    public enum Phase: Sendable, Equatable {
        /// Waiting for an earlier connection's frames to commit; incoming frames are held.
        case awaitingWelcome
        case streaming
        /// A newer connection took over, or the hub is stopping: frames are no longer taken.
        case stopped
        /// The socket is gone.
        case inactive
    }

    /// A frame's payload, copied while it waits.
    public enum Incoming: Sendable, Equatable {
        case binary([UInt8])
        case text([UInt8])
    }

    /// What to do with a frame that arrived.
    public enum Gate: Equatable {
        /// Process it now.
        case take
        /// Kept (before the welcome, or past the rate); it comes back later.
        case kept
        /// Not taken: never acked, so the device sends it again.
        case drop
    }

    /// What one binary frame did, beyond what the burst carries.
    public enum Outcome {
        case taken
        /// Tell the device, and log it (rate-limited by the shell).
        case rejected(RejectedFrame)
    }

    /// What to do at the end of a read cycle, after the burst went to the queue.
    public struct CycleEnd: Equatable {
        /// Write this ack now.
        public var ack: UInt64?
        /// Close the connection with this reason.
        public var close: CloseReason?
        /// The frame rate is exceeded: stop reading and call `rateRecovered` after this long.
        public var pauseNanos: UInt64?
    }

    /// What the counters learn from one read cycle.
    public struct CycleCounts: Equatable {
        public var frames = 0
        public var readings = 0
        public var duplicates = 0
        /// Sequence gaps seen since the last report.
        public var gaps = 0

        public init(frames: Int = 0, readings: Int = 0, duplicates: Int = 0, gaps: Int = 0) {
            self.frames = frames
            self.readings = readings
            self.duplicates = duplicates
            self.gaps = gaps
        }
    }

    /// What becomes of the connection once everything it handed to ingest is committed.
    public struct Drained {
        /// Replaced: close with 4001 and announce it offline.
        public var closeReplaced = false
        /// The socket is gone: leave the registry.
        public var detach = false
        /// Callers of `replace(whenDrained:)` to tell.
        public var waiters: [@Sendable () -> Void] = []
    }

    /// What the heartbeat does at a tick.
    public enum Beat: Equatable {
        case ping
        case close
    }

    /// What a read cycle collected for ingest, until `takeBurst`.
    private struct Pending {
        var frames: [AcceptedFrame] = []
        var rejections: [RejectedFrame] = []
        var start: SessionStart?
        var isEmpty: Bool { frames.isEmpty && rejections.isEmpty && start == nil }
    }

    public let device: DeviceRecordRef
    public private(set) var phase = Phase.awaitingWelcome
    public private(set) var session: Int64 = 0
    /// The close frame went out (or the peer's was answered): nothing more is written.
    public private(set) var closing = false
    /// Reading was asked for while it may not happen; it happens when it may.
    public private(set) var readPending = false
    private var stream: DeviceStream?
    private var pending = Pending()
    private var held: [Incoming] = []
    private var deferred: [Incoming] = []
    /// Bursts handed to the queue and not committed yet.
    private var inFlight = 0
    private var drainWaiters: [@Sendable () -> Void] = []
    private var replaced = false
    /// The ingest queue is full: not read until it has room.
    private var pausedForQueue = false
    private var frameBudget: TokenBucket
    private var rateDebtNanos: UInt64?
    private var pausedForRate = false
    private var pendingAck: UInt64?
    private var counts = CycleCounts()
    private var reportedGaps = 0
    private var closeAfterCycle: CloseReason?
    private var lastActivityNanos: UInt64
    /// Command replies posted and not applied yet.
    private var repliesInFlight = 0
    private var online = false

    /// - Parameter framesPerSecond: the device's frame rate (frames and text messages).
    public init(device: DeviceRecordRef, framesPerSecond: Int, nowNanos: UInt64) {
        self.device = device
        frameBudget = TokenBucket(perSecond: Double(framesPerSecond))
        lastActivityNanos = nowNanos
    }

    // MARK: - Lifecycle

    /// The registry (or, in a cluster, the claim) gave this connection `session`. Unless
    /// it is already stored (`persist` false: a claim wrote it), its start goes with the
    /// next burst.
    public mutating func attached(session: Int64, remote: String, nowMicros: Int64, persist: Bool = true) {
        self.session = session
        if persist { pending.start = SessionStart(session: session, remote: remote, atMicros: nowMicros) }
    }

    /// The welcome goes out (at once, or once the connection taken over is drained).
    /// - Returns: the frames held meanwhile, to process in order; `nil` if it is too late
    ///   (the connection closed or stopped first) and no welcome may go out.
    public mutating func welcome(stream: DeviceStream) -> [Incoming]? {
        guard phase == .awaitingWelcome else { return nil }
        self.stream = stream
        phase = .streaming
        online = true
        defer { held = [] }
        return held
    }

    /// Whether the connection was announced online and not yet offline; it is offline from now.
    public mutating func goOffline() -> Bool {
        defer { online = false }
        return online
    }

    /// The socket is gone: what was read goes to ingest; nothing more is taken.
    public mutating func inactive() {
        phase = .inactive
    }

    /// Stop taking frames (a takeover, or the hub stopping); what was read is handed over.
    public mutating func stop() {
        if phase != .inactive { phase = .stopped }
    }

    /// A newer connection took over: once drained, close with 4001 and tell `drained`.
    public mutating func replace(whenDrained drained: @escaping @Sendable () -> Void) {
        replaced = true
        stop()
        drainWaiters.append(drained)
    }

    /// Decides to close (once). - Returns: false if a close is already under way.
    public mutating func close() -> Bool {
        guard !closing else { return false }
        closing = true
        stop()
        return true
    }

    /// Whether text may be written (commands): the welcome is out and no close is under way.
    public var mayWrite: Bool { phase == .streaming && !closing }

    /// Whether acks may be written: not closing and the socket is there.
    public var mayAck: Bool { !closing && phase != .inactive }

    // MARK: - Inbound

    /// Something arrived; the heartbeat counts from here.
    public mutating func heard(nowNanos: UInt64) {
        lastActivityNanos = nowNanos
    }

    /// A binary or text frame arrived. `copy` is called only if it must wait.
    public mutating func gate(_ copy: @autoclosure () -> Incoming) -> Gate {
        switch phase {
        case .awaitingWelcome:
            held.append(copy())
            return .kept
        case .streaming:
            guard !pausedForRate else {
                deferred.append(copy())
                return .kept
            }
            return .take
        case .stopped, .inactive:
            return .drop
        }
    }

    /// A frame or text message is taken: it counts against the frame rate.
    public mutating func charge(nowNanos: UInt64) {
        if let debt = frameBudget.take(nowNanos: nowNanos) {
            rateDebtNanos = debt
            pausedForRate = true
        }
    }

    /// A binary frame, after `charge`.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer, nowMicros: Int64) -> Outcome {
        guard stream != nil else { return .taken }
        switch stream!.receive(bytes, nowMicros: nowMicros) {
        case .accept(let accepted):
            counts.frames += 1
            counts.readings += accepted.frame.readings.count
            pending.frames.append(accepted)
        case .duplicate(let ackNow):
            counts.duplicates += 1
            if let ackNow { pendingAck = max(pendingAck ?? 0, ackNow) }
        case .reject(let rejected, let closeConnection):
            pending.rejections.append(rejected)
            if closeConnection { closeAfterCycle = .tooManyBadFrames }
            return .rejected(rejected)
        }
        return .taken
    }

    /// The peer sent a close frame. - Returns: whether to answer it (the first time).
    public mutating func peerClosed() -> Bool {
        guard !closing else { return false }
        closing = true
        return true
    }

    // MARK: - Command replies

    /// A reply goes to the command center; reading stops at `maxInFlight` of them.
    public mutating func replyPosted() {
        repliesInFlight += 1
    }

    public mutating func replyApplied() {
        repliesInFlight -= 1
    }

    // MARK: - Read cycles and reading

    /// What this cycle (or the takeover, or the end) hands to ingest, if anything, naming
    /// `connection` (the shell) so the writer can ack it. In flight until `committed`.
    public mutating func takeBurst(for connection: any DeviceConnection) -> IngestBurst? {
        guard !pending.isEmpty else { return nil }
        var burst = IngestBurst(device: device, connection: connection, session: session)
        swap(&burst.frames, &pending.frames)
        swap(&burst.rejections, &pending.rejections)
        burst.start = pending.start
        pending.start = nil
        inFlight += 1
        return burst
    }

    /// The queue took a burst. - Returns: whether to wait for room (`queueHasRoom`) before
    /// reading again.
    public mutating func pushed(queueHasRoom: Bool) -> Bool {
        guard !queueHasRoom, !pausedForQueue else { return false }
        pausedForQueue = true
        return true
    }

    public mutating func queueHasRoom() {
        pausedForQueue = false
    }

    /// The read cycle ended (after `takeBurst`).
    public mutating func endCycle(writable: Bool) -> CycleEnd {
        var end = CycleEnd()
        if let ack = pendingAck, writable {
            pendingAck = nil
            end.ack = ack
        }
        end.close = closeAfterCycle
        closeAfterCycle = nil
        end.pauseNanos = rateDebtNanos
        rateDebtNanos = nil
        return end
    }

    /// What the cycle counted, once; the counters then start again.
    public mutating func takeCounts() -> CycleCounts {
        var taken = counts
        counts = CycleCounts()
        let gaps = stream?.gaps ?? 0
        if gaps > reportedGaps {
            taken.gaps = gaps - reportedGaps
            reportedGaps = gaps
        }
        return taken
    }

    /// The rate's debt is paid. - Returns: the frames read past it, to take in order
    /// while `nextDeferred` gives them; `false` if the connection no longer streams.
    public mutating func rateRecovered() -> Bool {
        pausedForRate = false
        return phase == .streaming
    }

    /// The next frame read past the rate, while the rate allows.
    public mutating func nextDeferred() -> Incoming? {
        guard !pausedForRate, !deferred.isEmpty else { return nil }
        return deferred.removeFirst()
    }

    /// Reading was asked for. - Returns: whether to read now; if not, it is remembered.
    /// Not read while the device does not take what the hub writes (its replies would only
    /// pile up), nor past the rate, the ingest queue, or the replies in flight.
    public mutating func mayRead(writable: Bool, maxRepliesInFlight: Int) -> Bool {
        guard phase == .streaming, !pausedForQueue, !pausedForRate, writable, repliesInFlight < maxRepliesInFlight else {
            readPending = true
            return false
        }
        readPending = false
        return true
    }

    /// The socket can be written again. - Returns: the ack that waited, if any.
    public mutating func writableAgain() -> UInt64? {
        defer { pendingAck = nil }
        return pendingAck
    }

    // MARK: - Commits

    /// `items` of this connection's bursts are committed, up to `seq`.
    /// - Returns: the ack to write now (`nil`: none, or held until the socket is writable).
    public mutating func committed(upTo seq: UInt64?, items: Int, writable: Bool) -> UInt64? {
        inFlight -= items
        guard let seq else { return nil }
        stream?.committed(upTo: seq)
        guard mayAck else { return nil }
        guard writable else {
            // One ack covers all before it: hold only the newest until it can go.
            pendingAck = max(pendingAck ?? 0, seq)
            return nil
        }
        return seq
    }

    /// Whether everything handed to ingest is committed, and what follows.
    /// - Returns: `nil` while something is in flight.
    public mutating func drained() -> Drained? {
        guard inFlight == 0, pending.isEmpty else { return nil }
        defer { drainWaiters = [] }
        return Drained(closeReplaced: replaced, detach: phase == .inactive, waiters: drainWaiters)
    }

    // MARK: - Heartbeat

    /// A heartbeat tick: ping, or close a device silent for two intervals.
    /// - Returns: `nil` once closing.
    public func beat(nowNanos: UInt64, intervalNanos: UInt64) -> Beat? {
        guard !closing else { return nil }
        return nowNanos &- lastActivityNanos > intervalNanos * 2 ? .close : .ping
    }
}
