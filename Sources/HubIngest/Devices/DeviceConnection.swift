/// A device's live connection, as the domain sees it. The transport implements it; every
/// method may be called from any thread and hops to the connection's own thread itself.
public protocol DeviceConnection: AnyObject, Sendable {
    /// A unique id for logs and presence.
    var connectionID: String { get }

    /// Everything up to `seq` is committed; `items` of this connection's queued bursts are done.
    func committed(upTo seq: UInt64?, items: Int)

    /// A newer connection took over: stop taking frames, close with 4001 once every frame
    /// already taken is committed or rejected, then call `drained`.
    func replace(whenDrained drained: @escaping @Sendable () -> Void)

    /// Closes the connection with a close code (deleted, disabled, shutting down…).
    func close(_ reason: CloseReason)

    /// Sends a text message (a command) once the welcome has gone out.
    func send(text: String)
}

/// Why the hub closes a device or dashboard socket; each has its WebSocket close code.
public enum CloseReason: String, Sendable, CaseIterable {
    case normal
    case shuttingDown = "shutting_down"
    case tooManyBadFrames = "too_many_bad_frames"
    case frameTooLarge = "frame_too_large"
    case replaced
    case heartbeatTimeout = "heartbeat_timeout"
    case revoked
    case slowConsumer = "slow_consumer"
    /// A device that took no byte of what the hub wrote for `--write-timeout`.
    case notReading = "not_reading"
    /// In a cluster, the device could not be claimed (the database did not answer): try
    /// again later, perhaps through another node.
    case unavailable

    public var code: UInt16 {
        switch self {
        case .normal: 1000
        case .shuttingDown: 1001
        case .tooManyBadFrames, .notReading: 1008
        case .frameTooLarge: 1009
        case .replaced: 4001
        case .heartbeatTimeout: 4002
        case .revoked: 4003
        case .slowConsumer: 4008
        case .unavailable: 1013
        }
    }
}
