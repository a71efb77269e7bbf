import HubIngest
import NIOConcurrencyHelpers
import NIOHTTP1

/// Who may open a WebSocket now: the connect rate, the connection counts, and the browser
/// origin. Checked before an upgrade (`RequestGate`); a refusal is the HTTP answer instead.
final class Admission: Sendable {
    enum Kind { case device, dashboard }

    private let configuration: ServerConfiguration
    private let connects: NIOLockedValueBox<TokenBucket>
    private let clock: any HubClock

    init(configuration: ServerConfiguration, clock: any HubClock) {
        self.configuration = configuration
        self.clock = clock
        connects = NIOLockedValueBox(TokenBucket(perSecond: Double(configuration.connectsPerSecond)))
    }

    /// - Returns: the refusal, or `nil` to let the upgrade go ahead.
    func refusal(for kind: Kind, openConnections: Int) -> HTTPReply? {
        let limit = kind == .device ? configuration.maxDeviceConnections : configuration.maxDashboardConnections
        if openConnections >= limit {
            var reply = HTTPReply.error(.serviceUnavailable, code: "too_many_connections", "the hub holds \(limit) \(kind == .device ? "device" : "dashboard") connections")
            reply.close = true
            reply.retryAfterSeconds = 5
            return reply
        }
        guard connects.withLockedValue({ $0.tryTake(nowNanos: clock.uptimeNanos()) }) else {
            var reply = HTTPReply.error(.serviceUnavailable, code: "connect_rate", "more than \(configuration.connectsPerSecond) connects per second; retry")
            reply.close = true
            reply.retryAfterSeconds = 1
            return reply
        }
        return nil
    }

    /// A browser request (it carries `Origin`) from an origin that is not allowed gets 403.
    /// Requests without `Origin` (devices, scripts) pass.
    func refusedOrigin(_ head: HTTPRequestHead) -> HTTPReply? {
        guard let origin = head.headers.first(name: "origin") else { return nil }
        let allowed: Bool
        if configuration.allowedOrigins.isEmpty {
            let host = head.headers.first(name: "host") ?? ""
            allowed = origin.split(separator: "/").last.map { String($0) == host } ?? false
                && (origin.hasPrefix("http://") || origin.hasPrefix("https://"))
        } else {
            allowed = configuration.allowedOrigins.contains(origin) || configuration.allowedOrigins.contains("*")
        }
        guard !allowed else { return nil }
        var reply = HTTPReply.error(.forbidden, code: "origin_not_allowed", "origin \(origin) is not allowed (--allowed-origin)")
        reply.close = true
        return reply
    }
}
