import HubIngest

/// The API tokens a dashboard or script may present.
public struct APITokens: Sendable {
    public enum Access: Sendable, Equatable {
        case full
        case readOnly
    }

    private let fullHash: [UInt8]
    private let readOnlyHash: [UInt8]?

    public init(full: String, readOnly: String?) {
        fullHash = DeviceToken.hash(full)
        readOnlyHash = readOnly.map(DeviceToken.hash)
    }

    /// The rights a presented token carries; `nil` if it is missing or wrong.
    public func access(for token: String?) -> Access? {
        guard let token else { return nil }
        if DeviceToken.matches(token, hash: fullHash) { return .full }
        if let readOnlyHash, DeviceToken.matches(token, hash: readOnlyHash) { return .readOnly }
        return nil
    }
}
