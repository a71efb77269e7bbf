/// What the hub knows about one registered device.
public struct DeviceRecord: Sendable, Hashable {
    /// The storage's integer key: rows refer to it instead of the text id.
    public var key: Int32
    public var id: String
    /// SHA-256 of the device's token; `nil` for a device provisioned without one.
    public var tokenHash: [UInt8]?
    public var enabled: Bool
    /// The highest sequence number durably stored or rejected (`welcome.last_seq`).
    public var mark: UInt64
    /// The number of the latest connect; the next connect gets `session + 1`.
    public var session: Int64

    public init(key: Int32, id: String, tokenHash: [UInt8]?, enabled: Bool = true, mark: UInt64 = 0, session: Int64 = 0) {
        self.key = key
        self.id = id
        self.tokenHash = tokenHash
        self.enabled = enabled
        self.mark = mark
        self.session = session
    }
}
