import HubProtocol

/// What one device connection handed to ingest in one read cycle: accepted frames,
/// quarantined frames and, on connect, its new session.
///
/// Bursts cross from an event loop to the writer thread; one burst per read cycle keeps
/// the handover cost off the per-frame path.
public struct IngestBurst: Sendable {
    public let device: DeviceRecordRef
    /// Told when the burst is committed, so it can ack.
    public let connection: any DeviceConnection
    public var frames: [AcceptedFrame] = []
    public var rejections: [RejectedFrame] = []
    /// The connection's session. In a cluster the commit is fenced by it: the burst commits
    /// only while this session still owns the device in PostgreSQL.
    public let session: Int64
    /// The connect, persisted with the burst (single-node mode; a cluster claims instead).
    public var start: SessionStart?

    public init(device: DeviceRecordRef, connection: any DeviceConnection, session: Int64 = 0) {
        self.device = device
        self.connection = connection
        self.session = session
    }

    /// The device's fence: whose ownership this burst's commit needs.
    public var fence: DeviceFence { DeviceFence(key: device.key, session: session) }

    /// The number of readings: the unit the queue bound is written in.
    public var rowCount: Int { frames.reduce(0) { $0 + $1.frame.readings.count } + rejections.count }

    public var isEmpty: Bool { frames.isEmpty && rejections.isEmpty && start == nil }

    /// Whether the burst stores anything (frames or rejections), and so needs its fence.
    public var stores: Bool { !frames.isEmpty || !rejections.isEmpty }

    /// The highest sequence number this burst commits: the ack it earns.
    public var highestSeq: UInt64? {
        let framesMax = frames.last?.frame.seq
        let rejectedMax = rejections.compactMap(\.seq).max()
        switch (framesMax, rejectedMax) {
        case (let a?, let b?): return max(a, b)
        case (let a?, nil): return a
        case (nil, let b): return b
        }
    }
}

/// The identity of a device inside ingest: its storage key and text id.
public struct DeviceRecordRef: Sendable, Hashable {
    public let key: Int32
    public let id: String

    public init(key: Int32, id: String) {
        self.key = key
        self.id = id
    }
}

/// A frame that passed decoding and the duplicate check.
public struct AcceptedFrame: Sendable {
    public let frame: TelemetryFrame
    public let receivedAtMicros: Int64

    public init(frame: TelemetryFrame, receivedAtMicros: Int64) {
        self.frame = frame
        self.receivedAtMicros = receivedAtMicros
    }

    /// The frame's time base: its own, or the receive time when it sent `0`.
    public var baseMicros: Int64 { frame.effectiveBase(receivedAtMicros: receivedAtMicros) }
}

/// A frame kept whole in the dead-letter table.
public struct RejectedFrame: Sendable {
    public let seq: UInt64?
    public let reason: String
    public let payload: [UInt8]
    public let receivedAtMicros: Int64

    public init(seq: UInt64?, reason: String, payload: [UInt8], receivedAtMicros: Int64) {
        self.seq = seq
        self.reason = reason
        self.payload = payload
        self.receivedAtMicros = receivedAtMicros
    }
}

/// A connect, persisted with the next write so sessions survive restarts.
public struct SessionStart: Sendable {
    public let session: Int64
    public let remote: String
    public let atMicros: Int64

    public init(session: Int64, remote: String, atMicros: Int64) {
        self.session = session
        self.remote = remote
        self.atMicros = atMicros
    }
}

/// A device and the session that must own it for a write to commit. A batch whose session
/// no longer owns its device (another node claimed it) is fenced: rolled back for that
/// device, never acked, and its connection closed; the device resends.
public struct DeviceFence: Hashable, Sendable {
    public let key: Int32
    public let session: Int64

    public init(key: Int32, session: Int64) {
        self.key = key
        self.session = session
    }
}
