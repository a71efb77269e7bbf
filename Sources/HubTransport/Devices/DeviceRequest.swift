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

        /// A 401 or 403: counted against the source address (contract section 7).
        var isFailedAuthentication: Bool {
            switch self {
            case .unauthorized, .disabled: true
            case .badPath, .unavailable: false
            }
        }

        /// The HTTP answer; it closes the connection.
        var reply: HTTPReply {
            var reply = HTTPReply.closing(.error(status, code: code, message))
            if status == .serviceUnavailable { reply.retryAfterSeconds = 1 }
            return reply
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

    /// `/devices` and everything under it: a malformed id there is 400, never 404.
    static func isDevicePath(_ path: Substring) -> Bool {
        path == "/devices" || path.hasPrefix(pathPrefix)
    }

    let deviceID: String
    let token: String?

    /// Reads `/devices/{id}[?token=…]` and the `Authorization: Bearer` header.
    init(_ request: HubRequest) throws(Refusal) {
        let path = request.path
        guard Self.isDevicePath(path) else { throw .badPath("not a device path") }
        let id = String(path.dropFirst(min(path.count, Self.pathPrefix.count)))
        guard DeviceID.isValid(id) else {
            throw .badPath("invalid device id: use 1-64 characters of A-Z a-z 0-9 . _ - (not only dots)")
        }
        deviceID = id
        token = request.token(queryToken: true)
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
