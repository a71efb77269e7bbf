import HubIngest
import HubProtocol
import NIOCore

/// Pushes accepted frames and presence changes to matching dashboard subscriptions.
///
/// Called on a device's event loop once per read cycle. Each frame's JSON body is built
/// once per distinct metric filter; deliveries are grouped per dashboard event loop, so a
/// read cycle costs one task per loop, not one per frame or per subscriber.
final class LiveFanout: Sendable {
    let index = SubscriptionIndex<LiveSubscription>()

    func publish(device: String, frames: [AcceptedFrame]) {
        let subscriptions = index.matching(device)
        guard !subscriptions.isEmpty else { return }
        var bodies: [Set<String>?: [String?]] = [:]
        var deliveries = Deliveries()
        for subscription in subscriptions {
            let filter = subscription.metrics
            let encoded = bodies[filter] ?? frames.map {
                LiveMessages.telemetryBody(device: device, frame: $0.frame, baseMicros: $0.baseMicros, metrics: filter)
            }
            bodies[filter] = encoded
            let prefix = LiveMessages.telemetryPrefix(sub: subscription.id)
            for (frame, body) in zip(frames, encoded) {
                guard let body else { continue }
                deliveries.add(.telemetry(subscription: subscription, device: device, frame: frame, text: prefix + body), to: subscription.dashboard)
            }
        }
        deliveries.send()
    }

    func publishPresence(device: String, online: Bool, session: Int64, connection: String, remote: String) {
        let subscriptions = index.matching(device)
        guard !subscriptions.isEmpty else { return }
        let text = LiveMessages.presence(
            device: device, online: online, session: session, connection: connection, remote: remote,
            atMicros: WallClock.nowMicros())
        var deliveries = Deliveries()
        var seen: Set<ObjectIdentifier> = []
        // One presence event per dashboard, however many of its subscriptions match.
        for subscription in subscriptions where seen.insert(ObjectIdentifier(subscription.dashboard)).inserted {
            deliveries.add(.control(text), to: subscription.dashboard)
        }
        deliveries.send()
    }
}

/// An event on its way to one dashboard.
enum LiveEvent: Sendable {
    case telemetry(subscription: LiveSubscription, device: String, frame: AcceptedFrame, text: String)
    case control(String)
}

/// Events grouped by dashboard and by event loop, sent with one task per loop.
private struct Deliveries {
    private var byLoop: [ObjectIdentifier: (loop: EventLoop, batches: [ObjectIdentifier: (DashboardHandler, [LiveEvent])])] = [:]

    mutating func add(_ event: LiveEvent, to dashboard: DashboardHandler) {
        let loopKey = ObjectIdentifier(dashboard.eventLoop)
        let dashboardKey = ObjectIdentifier(dashboard)
        if byLoop[loopKey] == nil { byLoop[loopKey] = (dashboard.eventLoop, [:]) }
        byLoop[loopKey]!.batches[dashboardKey, default: (dashboard, [])].1.append(event)
    }

    func send() {
        for (_, entry) in byLoop {
            let batches = Array(entry.batches.values)
            entry.loop.execute {
                for (dashboard, events) in batches { dashboard.deliver(events) }
            }
        }
    }
}
