import HubProtocol

/// The per-connection ingest state machine: decodes each binary message, applies the
/// duplicate check and the bad-frame limit, and says what to do. No I/O; the transport
/// performs the actions.
public struct DeviceStream: Sendable {
    public enum Action: Sendable {
        /// Queue it for the writer.
        case accept(AcceptedFrame)
        /// At or below the mark. Send an ack for `ackNow` if set; otherwise a pending
        /// commit's ack covers it.
        case duplicate(ackNow: UInt64?)
        /// Quarantine it and tell the device; close with 1008 if `closeConnection`.
        case reject(RejectedFrame, closeConnection: Bool)
    }

    public struct Limits: Sendable {
        /// More bad frames than this within `badFrameWindowMicros` closes the connection.
        public var maxBadFrames = 100
        public var badFrameWindowMicros: Int64 = 60_000_000

        public init() {}
    }

    /// The highest seq taken on (queued, committed or rejected).
    public private(set) var acceptedMark: UInt64
    /// The highest seq known committed.
    public private(set) var committedMark: UInt64
    private let limits: Limits
    /// The device's metric names, held to the catalog's limits; `nil` checks none.
    private var metrics: DeviceMetrics?
    private var badFrameTimes: [Int64] = []
    private var badFrameHead = 0
    public private(set) var duplicates = 0
    public private(set) var gaps = 0

    /// - Parameters:
    ///   - mark: the device's committed mark when the welcome was sent.
    ///   - metrics: the device's metric names and their limits.
    public init(mark: UInt64, limits: Limits = Limits(), metrics: DeviceMetrics? = nil) {
        acceptedMark = mark
        committedMark = mark
        self.limits = limits
        self.metrics = metrics
    }

    public mutating func receive(_ bytes: UnsafeRawBufferPointer, nowMicros: Int64) -> Action {
        do throws(FrameError) {
            let frame = try TelemetryFrame(decoding: bytes, receivedAtMicros: nowMicros)
            if let duplicate = duplicateAction(seq: frame.seq) { return duplicate }
            advance(to: frame.seq)
            if let why = metrics?.admit(frame) {
                let rejected = RejectedFrame(
                    seq: frame.seq, reason: "\(Self.tooManyMetrics): \(why)", payload: Array(bytes), receivedAtMicros: nowMicros)
                return .reject(rejected, closeConnection: recordBadFrame(at: nowMicros))
            }
            return .accept(AcceptedFrame(frame: frame, receivedAtMicros: nowMicros))
        } catch {
            if let seq = error.seq {
                if let duplicate = duplicateAction(seq: seq) { return duplicate }
                advance(to: seq)
            }
            let rejected = RejectedFrame(
                seq: error.seq, reason: error.description, payload: Array(bytes), receivedAtMicros: nowMicros)
            return .reject(rejected, closeConnection: recordBadFrame(at: nowMicros))
        }
    }

    /// The reason of a frame that would pass a metric-name limit (contract section 7).
    public static let tooManyMetrics = "too_many_metrics"

    /// The writer committed everything up to `seq`.
    public mutating func committed(upTo seq: UInt64) {
        committedMark = max(committedMark, seq)
    }

    private mutating func duplicateAction(seq: UInt64) -> Action? {
        guard seq <= acceptedMark else { return nil }
        duplicates += 1
        return .duplicate(ackNow: seq <= committedMark ? committedMark : nil)
    }

    private mutating func advance(to seq: UInt64) {
        if seq > acceptedMark + 1 { gaps += 1 }
        acceptedMark = seq
    }

    /// Records a bad frame. - Returns: whether the limit is now exceeded.
    private mutating func recordBadFrame(at now: Int64) -> Bool {
        // A ring of the last `maxBadFrames + 1` bad-frame times: exceeded when the oldest
        // of them is still inside the window.
        let size = limits.maxBadFrames + 1
        if badFrameTimes.count < size {
            badFrameTimes.append(now)
            return badFrameTimes.count == size && now - badFrameTimes[0] < limits.badFrameWindowMicros
        }
        badFrameTimes[badFrameHead] = now
        badFrameHead = (badFrameHead + 1) % size
        return now - badFrameTimes[badFrameHead] < limits.badFrameWindowMicros
    }
}
