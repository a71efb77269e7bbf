import HubIngest
import NIOHTTP1

/// The one decision on a WebSocket upgrade request: which endpoint it is for, and whether
/// it may go ahead, taken once per request and carried to the handler that builds the
/// pipeline. Order: path, the source address's failed-authentication budget, origin,
/// credentials, then connection counts and the connect rate, so a refused credential
/// never spends the connect rate that devices with good tokens share.
struct UpgradeGate: Sendable {
    enum Verdict: Sendable {
        case device(DeviceRecord)
        case dashboard(APITokens.Access)
        /// Unknown id under `--auto-provision`: register it, then upgrade.
        case provision(String)
        case refused(HTTPReply)
    }

    let registry: DeviceRegistry
    let tokens: APITokens
    let admission: Admission
    let failures: AuthFailureLimiter
    let openDevices: @Sendable () -> Int
    let openDashboards: @Sendable () -> Int
    let clock: any HubClock

    /// Whether `path` is served by WebSocket upgrades (`/devices/…` or `/live`).
    static func isUpgradePath(_ path: Substring) -> Bool {
        path == "/live" || DeviceRequest.isDevicePath(path)
    }

    /// The verdict for an upgrade request of `head` from `address` (host only).
    func verdict(_ head: HTTPRequestHead, address: String) -> Verdict {
        let path = RequestTarget.split(head.uri).path
        let now = clock.uptimeNanos()
        if failures.isBlocked(address, nowNanos: now) { return .refused(tooManyFailures(address, now)) }
        if path == "/live" {
            if let origin = admission.refusedOrigin(head) { return .refused(origin) }
            guard let access = LiveRequest.access(head, tokens: tokens) else {
                failures.recordFailure(address, nowNanos: now)
                return .refused(.closing(.error(.unauthorized, code: "unauthorized", "missing or invalid API token")))
            }
            if let limit = admission.refusal(for: .dashboard, openConnections: openDashboards()) { return .refused(limit) }
            return .dashboard(access)
        }
        do throws(DeviceRequest.Refusal) {
            let request = try DeviceRequest(head: head)
            let verdict = try request.authenticate(registry)
            if let limit = admission.refusal(for: .device, openConnections: openDevices()) { return .refused(limit) }
            switch verdict {
            case .accepted(let record): return .device(record)
            case .provision: return .provision(request.deviceID)
            case .unauthorized, .disabled: return .refused(DeviceRequest.Refusal.unauthorized.reply)  // thrown above
            }
        } catch {
            if error.isFailedAuthentication { failures.recordFailure(address, nowNanos: now) }
            return .refused(error.reply)
        }
    }

    /// The answer to a request that needs a credential from an address over its budget.
    func tooManyFailures(_ address: String, _ now: UInt64) -> HTTPReply {
        var reply = HTTPReply.error(.tooManyRequests, code: "too_many_failures", "too many failed authentications from this address; retry later")
        reply.retryAfterSeconds = failures.retryAfterSeconds(address, nowNanos: now)
        reply.close = true
        return reply
    }
}

extension HTTPReply {
    /// The same answer, closing the connection after it.
    static func closing(_ reply: HTTPReply) -> HTTPReply {
        var reply = reply
        reply.close = true
        return reply
    }
}
