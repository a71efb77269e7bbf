import HubIngest
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore

/// Pushes accepted frames and presence changes to matching dashboard subscriptions.
///
/// Called on a device's event loop once per read cycle. Each frame's JSON body is built
/// once per distinct metric filter. Deliveries collect in a batch of the publishing loop
/// and go out when that loop finishes its current pass: one task per dashboard loop and
/// one flush per dashboard for everything the pass read, however many devices sent.
public final class LiveFanout: Sendable {
    let index = SubscriptionIndex<LiveSubscription>()
    /// Presence in session order, from this node and (in a cluster) the others.
    private let presence = NIOLockedValueBox(PresenceOrder())
    /// The rest of the cluster, told of this node's presence changes; `nil` on a single node.
    private let link: (any ClusterLink)?

    public init(link: (any ClusterLink)? = nil) {
        self.link = link
    }
    private let batches = NIOLockedValueBox<[ObjectIdentifier: FanoutBatch]>([:])

    /// Whether the device's latest presence event, from any node, says online; `nil` if none was seen.
    public func isOnline(key: Int32) -> Bool? {
        presence.withLockedValue { $0.isOnline(key: key) }
    }

    /// The batch of deliveries gathered on `loop`; use it only on that loop.
    func batch(for loop: EventLoop) -> FanoutBatch {
        batches.withLockedValue { batches in
            if let batch = batches[ObjectIdentifier(loop)] { return batch }
            let batch = FanoutBatch(loop: loop)
            batches[ObjectIdentifier(loop)] = batch
            return batch
        }
    }

    func publish(device: String, frames: [AcceptedFrame], on batch: FanoutBatch) {
        let subscriptions = index.matching(device)
        guard !subscriptions.isEmpty else { return }
        var bodies: [Set<String>?: [String?]] = [:]
        // Dashboards that conflate take readings, not text: when all of them do (a stuck
        // dashboard, say), build no text at all. Otherwise build it once and share it, so
        // one that drains meanwhile need not build its own.
        let allBacklogged = subscriptions.allSatisfy { $0.dashboard.isBacklogged }
        for subscription in subscriptions {
            if allBacklogged {
                for frame in frames {
                    batch.add(.telemetry(subscription: subscription, device: device, frame: frame, text: nil), to: subscription.dashboard)
                }
                continue
            }
            let filter = subscription.metrics
            let encoded = bodies[filter] ?? frames.map {
                TelemetryJSON.body(device: device, frame: $0.frame, baseMicros: $0.baseMicros, metrics: filter)
            }
            bodies[filter] = encoded
            let prefix = TelemetryJSON.prefix(sub: subscription.id)
            for (frame, body) in zip(frames, encoded) {
                guard let body else { continue }
                batch.add(.telemetry(subscription: subscription, device: device, frame: frame, text: prefix + body), to: subscription.dashboard)
            }
        }
    }

    /// A rare event (a command's status) to every dashboard subscribed to `device`, and to
    /// `origin` (the dashboard that asked) whether subscribed or not; each once, at once.
    func publishNow(device: String, text makeText: @autoclosure () -> String, alsoTo origin: DashboardHandler?) {
        let dashboards = index.matching(device).map(\.dashboard) + (origin.map { [$0] } ?? [])
        guard !dashboards.isEmpty else { return }
        let text = makeText()
        var seen: Set<ObjectIdentifier> = []
        for dashboard in dashboards where seen.insert(ObjectIdentifier(dashboard)).inserted {
            dashboard.eventLoop.execute { dashboard.deliver([.control(text)]) }
        }
    }

    /// A presence change of a device connected here: to dashboards here and to the cluster.
    /// An event older than one already delivered (a newer session came online through
    /// another node first) is dropped.
    func publishPresence(
        device: DeviceRecordRef, online: Bool, session: Int64, connection: String, remote: String, atMicros: Int64,
        on batch: FanoutBatch
    ) {
        guard presence.withLockedValue({ $0.admit(key: device.key, session: session, online: online) }) else { return }
        let event = Presence(device: device.id, online: online, session: session, connection: connection, remote: remote, atMicros: atMicros)
        link?.presenceChanged(event, key: device.key)
        deliver(event, on: batch)
    }

    /// A presence change another node announced (cluster mode), on `loop`: the thread
    /// that calls it, always the same one.
    public func publishRemotePresence(_ event: Presence, key: Int32, on loop: EventLoop) {
        guard presence.withLockedValue({ $0.admit(key: key, session: event.session, online: event.online) }) else { return }
        deliver(event, on: batch(for: loop))
    }

    private func deliver(_ event: Presence, on batch: FanoutBatch) {
        let subscriptions = index.matching(event.device)
        guard !subscriptions.isEmpty else { return }
        let text = event.json
        var seen: Set<ObjectIdentifier> = []
        // One presence event per dashboard, however many of its subscriptions match.
        for subscription in subscriptions where seen.insert(ObjectIdentifier(subscription.dashboard)).inserted {
            batch.add(.control(text), to: subscription.dashboard)
        }
        // Presence goes out at once, behind the frames gathered before it: a takeover's
        // offline event must reach dashboards before the new session's online event.
        batch.sendNow()
    }
}

/// An event on its way to one dashboard.
enum LiveEvent: Sendable {
    /// `text` is `nil` when the dashboard was conflating as the frame was published.
    case telemetry(subscription: LiveSubscription, device: String, frame: AcceptedFrame, text: String?)
    case control(String)

    /// A telemetry event's message, made now if the fan-out did not make it.
    static func text(_ subscription: LiveSubscription, device: String, frame: AcceptedFrame) -> String? {
        TelemetryJSON.body(device: device, frame: frame.frame, baseMicros: frame.baseMicros, metrics: subscription.metrics)
            .map { TelemetryJSON.prefix(sub: subscription.id) + $0 }
    }
}

/// Events gathered on one event loop during its current pass, grouped by dashboard loop
/// and dashboard; sent when the pass ends. Touched only on its own loop.
final class FanoutBatch: @unchecked Sendable {
    private let loop: EventLoop
    private var byLoop: [ObjectIdentifier: (loop: EventLoop, batches: [ObjectIdentifier: (DashboardHandler, [LiveEvent])])] = [:]
    private var scheduled = false

    init(loop: EventLoop) {
        self.loop = loop
    }

    func add(_ event: LiveEvent, to dashboard: DashboardHandler) {
        let loopKey = ObjectIdentifier(dashboard.eventLoop)
        let dashboardKey = ObjectIdentifier(dashboard)
        if byLoop[loopKey] == nil { byLoop[loopKey] = (dashboard.eventLoop, [:]) }
        byLoop[loopKey]!.batches[dashboardKey, default: (dashboard, [])].1.append(event)
        if !scheduled {
            scheduled = true
            // Runs after the loop has handled the I/O it is processing now.
            loop.execute { self.sendNow() }
        }
    }

    func sendNow() {
        scheduled = false
        guard !byLoop.isEmpty else { return }
        let pending = byLoop
        byLoop = [:]
        for (_, entry) in pending {
            let batches = Array(entry.batches.values)
            if entry.loop === loop {
                for (dashboard, events) in batches { dashboard.deliver(events) }
            } else {
                entry.loop.execute {
                    for (dashboard, events) in batches { dashboard.deliver(events) }
                }
            }
        }
    }
}
