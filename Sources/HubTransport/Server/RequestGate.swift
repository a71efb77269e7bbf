import HubIngest
import NIOHTTP1

/// The one decision on a request, taken once from its classified head and carried to
/// whatever answers it: may it go ahead, and with what (a device record, an API access).
///
/// The WebSockets, in order: the source address's failed-authentication budget, origin,
/// credentials, then connection counts and the connect rate, so a refused credential
/// never spends the connect rate that devices with good tokens share. The API: origin,
/// the budget and the credential, then the declared body size, so a refused request
/// learns nothing else. The page and the operations endpoints: origin and body size.
struct RequestGate: Sendable {
    enum Decision: Sendable {
        case device(DeviceRecord)
        /// Unknown id under `--auto-provision`: register it, then upgrade.
        case provision(String)
        case dashboard(APITokens.Access)
        /// A REST request with a valid credential.
        case api(APITokens.Access)
        /// Needs no credential.
        case open
        case refused(HTTPReply)
    }

    let registry: DeviceRegistry
    let tokens: APITokens
    let admission: Admission
    let failures: AuthFailureLimiter
    let openDevices: @Sendable () -> Int
    let openDashboards: @Sendable () -> Int
    /// The largest request body taken; a larger declared one gets 413.
    let maxBodyBytes: Int
    let clock: any HubClock

    /// The decision on `request` from `address` (host only).
    func decide(_ request: HubRequest, address: String) -> Decision {
        let now = clock.uptimeNanos()
        switch request.endpoint {
        case .device, .live:
            return webSocket(request, address: address, now: now)
        case .rest:
            if let origin = admission.refusedOrigin(request.head) { return .refused(origin) }
            if failures.isBlocked(address, nowNanos: now) { return .refused(tooManyFailures(address, now)) }
            guard let access = tokens.access(for: request.token(queryToken: false)) else {
                failures.recordFailure(address, nowNanos: now)
                return .refused(.closing(.error(.unauthorized, code: "unauthorized", "missing or invalid API token")))
            }
            if access == .readOnly && request.head.method != .GET {
                failures.recordFailure(address, nowNanos: now)
                return .refused(.closing(.error(.forbidden, code: "forbidden", "a read-only token cannot change anything")))
            }
            return bodyRefusal(request).map(Decision.refused) ?? .api(access)
        default:
            if request.checksOrigin, let origin = admission.refusedOrigin(request.head) { return .refused(origin) }
            return bodyRefusal(request).map(Decision.refused) ?? .open
        }
    }

    private func webSocket(_ request: HubRequest, address: String, now: UInt64) -> Decision {
        if failures.isBlocked(address, nowNanos: now) { return .refused(tooManyFailures(address, now)) }
        if request.endpoint == .live {
            if let origin = admission.refusedOrigin(request.head) { return .refused(origin) }
            guard let access = tokens.access(for: request.token(queryToken: true)) else {
                failures.recordFailure(address, nowNanos: now)
                return .refused(.closing(.error(.unauthorized, code: "unauthorized", "missing or invalid API token")))
            }
            if let limit = admission.refusal(for: .dashboard, openConnections: openDashboards()) { return .refused(limit) }
            return .dashboard(access)
        }
        do throws(DeviceRequest.Refusal) {
            let device = try DeviceRequest(request)
            let verdict = try device.authenticate(registry)
            if let limit = admission.refusal(for: .device, openConnections: openDevices()) { return .refused(limit) }
            switch verdict {
            case .accepted(let record): return .device(record)
            case .provision: return .provision(device.deviceID)
            case .unauthorized, .disabled: return .refused(DeviceRequest.Refusal.unauthorized.reply)  // thrown above
            }
        } catch {
            if error.isFailedAuthentication { failures.recordFailure(address, nowNanos: now) }
            return .refused(error.reply)
        }
    }

    /// 413 for a declared body over the limit (one sent without a length is cut off as it arrives).
    private func bodyRefusal(_ request: HubRequest) -> HTTPReply? {
        guard let length = request.head.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes else {
            return nil
        }
        return .closing(.error(.payloadTooLarge, code: "too_large", "the body is over \(maxBodyBytes) bytes"))
    }

    /// The answer to a request that needs a credential from an address over its budget.
    func tooManyFailures(_ address: String, _ now: UInt64) -> HTTPReply {
        var reply = HTTPReply.error(.tooManyRequests, code: "too_many_failures", "too many failed authentications from this address; retry later")
        reply.retryAfterSeconds = failures.retryAfterSeconds(address, nowNanos: now)
        reply.close = true
        return reply
    }
}

/// A refused WebSocket upgrade, sent down the connection's pipeline ahead of the request
/// it refuses: the HTTP handler answers that request with `reply`.
struct RequestRefused {
    let reply: HTTPReply
}

extension HTTPReply {
    /// The same answer, closing the connection after it.
    static func closing(_ reply: HTTPReply) -> HTTPReply {
        var reply = reply
        reply.close = true
        return reply
    }
}
