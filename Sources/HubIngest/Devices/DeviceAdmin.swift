/// A device as the REST API shows it.
public struct DeviceInfo: Sendable, Equatable {
    public var id: String
    /// The labels object, as JSON text.
    public var labelsJSON: String
    public var enabled: Bool
    public var lastSeq: UInt64
    public var session: Int64
    public var lastSeenMicros: Int64?
    public var remote: String?

    public init(id: String, labelsJSON: String, enabled: Bool, lastSeq: UInt64, session: Int64, lastSeenMicros: Int64?, remote: String?) {
        self.id = id
        self.labelsJSON = labelsJSON
        self.enabled = enabled
        self.lastSeq = lastSeq
        self.session = session
        self.lastSeenMicros = lastSeenMicros
        self.remote = remote
    }
}

/// Which devices a listing holds, ordered by id.
public struct DeviceFilter: Sendable {
    /// Ids that start with it.
    public var prefix: String?
    /// Devices whose labels hold this key with this value.
    public var label: (key: String, value: String)?
    /// Ids after this one (the last of the previous page).
    public var after: String?
    /// At most this many; `nil`: all.
    public var limit: Int?

    public init(prefix: String? = nil, label: (key: String, value: String)? = nil, after: String? = nil, limit: Int? = nil) {
        self.prefix = prefix
        self.label = label
        self.after = after
        self.limit = limit
    }
}

/// Why a device operation was refused.
public enum DeviceAdminError: Error, Equatable {
    case invalidID
    case exists
    case notFound
    case badLabels
}

/// Registering and changing devices; the storage layer implements it. Each call returns
/// the stored record so the caller can update the in-memory registry at once.
public protocol DeviceAdmin: Sendable {
    func create(id: String, labelsJSON: String) async throws -> (record: DeviceRecord, token: String)
    func list(_ filter: DeviceFilter) async throws -> [DeviceInfo]
    func info(id: String) async throws -> DeviceInfo?
    /// - Returns: `nil` if the device is unknown.
    func update(id: String, enabled: Bool?, labelsJSON: String?) async throws -> DeviceRecord?
    /// - Returns: whether the device existed.
    func delete(id: String, purge: Bool) async throws -> Bool
    /// - Returns: the new token and record, or `nil` if the device is unknown.
    func rotateToken(id: String) async throws -> (record: DeviceRecord, token: String)?
}
