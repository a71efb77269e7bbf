import HubIngest
import HubProtocol
import NIOHTTP1

/// What a device's upgrade request asks for, and the hub's answer before any upgrade.
struct DeviceRequest {
    enum Refusal: Error {
        case badPath(String)
        case unauthorized
        case disabled
        /// The device table is not loaded yet: the database has been unreachable since start.
        case unavailable

        var status: HTTPResponseStatus {
            switch self {
            case .badPath: .badRequest
            case .unauthorized: .unauthorized
            case .disabled: .forbidden
            case .unavailable: .serviceUnavailable
            }
        }

        /// The contract's error code for the body.
        var code: String {
            switch self {
            case .badPath: "bad_request"
            case .unauthorized: "unauthorized"
            case .disabled: "forbidden"
            case .unavailable: "unavailable"
            }
        }

        var message: String {
            switch self {
            case .badPath(let why): why
            case .unauthorized: "missing or invalid device token"
            case .disabled: "device is disabled"
            case .unavailable: "the hub cannot reach its database yet; retry"
            }
        }
    }

    static let pathPrefix = "/devices/"

    let deviceID: String
    let token: String?

    /// Parses `/devices/{id}[?token=…]` and the `Authorization: Bearer` header.
    init(head: HTTPRequestHead) throws(Refusal) {
        let (path, query) = RequestTarget.split(head.uri)
        guard path.hasPrefix(Self.pathPrefix) else { throw .badPath("not a device path") }
        let id = String(path.dropFirst(Self.pathPrefix.count))
        guard DeviceID.isValid(id) else {
            throw .badPath("invalid device id: use 1-64 characters of A-Z a-z 0-9 . _ - (not only dots)")
        }
        deviceID = id
        token = RequestTarget.bearerToken(head.headers) ?? RequestTarget.queryValue(query, name: "token")
    }

    /// The registry's verdict; unknown devices under auto-provisioning come back as `.provision`.
    func authenticate(_ registry: DeviceRegistry) throws(Refusal) -> DeviceRegistry.Authentication {
        guard registry.isLoaded else { throw .unavailable }
        switch registry.authenticate(id: deviceID, token: token) {
        case .unauthorized: throw .unauthorized
        case .disabled: throw .disabled
        case let verdict: return verdict
        }
    }
}
