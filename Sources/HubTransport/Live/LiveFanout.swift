import HubIngest
import HubProtocol
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// Pushes accepted frames and presence changes to matching dashboard subscriptions.
///
/// Called on a device's event loop once per read cycle. Each frame's JSON body is built
/// once per distinct metric filter. Deliveries collect in a batch of the publishing loop
/// and, when that loop finishes its current pass, go to the mailbox of each dashboard loop
/// (`LoopMailbox`): bounded, conflating past its bound, drained by one task at a time and
/// flushed once per dashboard, however many devices sent. No loop ever waits for another.
public final class LiveFanout: Sendable {
    let index = SubscriptionIndex<LiveSubscription>()
    /// Presence in session order, from this node and (in a cluster) the others.
    private let presence = NIOLockedValueBox(PresenceOrder())
    /// The rest of the cluster, told of this node's presence changes; `nil` on a single node.
    private let link: (any ClusterLink)?

    /// - Parameter mailboxLimits: what may wait for one event loop's dashboards, from all
    ///   loops, before frames are conflated (`LoopMailbox`).
    init(link: (any ClusterLink)? = nil, mailboxLimits: DashboardMailbox.State.Limits) {
        self.link = link
        mailboxes = Mailboxes(limits: mailboxLimits)
    }

    public convenience init(link: (any ClusterLink)? = nil, maxFanoutDeliveries: Int = 100_000, maxFanoutBytes: Int = 8 << 20) {
        self.init(link: link, mailboxLimits: .init(maxDeliveries: maxFanoutDeliveries, maxBytes: maxFanoutBytes))
    }
    private let batches = NIOLockedValueBox<[ObjectIdentifier: FanoutBatch]>([:])
    private let mailboxes: Mailboxes

    /// How many local subscriptions hold each pattern: what this node announces to the others.
    private let patternCounts = NIOLockedValueBox<[DevicePattern: Int]>([:])
    /// What was fanned out per device, and the streams under repair (cluster mode).
    private typealias Ledger = FanoutLedger<any EventLoop>
    private let ledger = NIOLockedValueBox(Ledger())
    /// Frames from other nodes not held past `FanoutLedger.maxHeld` during a repair.
    private let heldDropped = Counter(label: "hub_cluster_repair_frames_dropped_total")

    func add(_ subscription: LiveSubscription, patterns: [DevicePattern]) {
        index.add(subscription, patterns: patterns)
        guard let link else { return }
        patternCounts.withLockedValue { counts in for pattern in Set(patterns) { counts[pattern, default: 0] += 1 } }
        link.interestChanged()
    }

    func remove(_ subscription: LiveSubscription, patterns: [DevicePattern]) {
        index.remove(subscription, patterns: patterns)
        guard let link else { return }
        patternCounts.withLockedValue { counts in
            for pattern in Set(patterns) {
                counts[pattern, default: 0] -= 1
                if counts[pattern]! <= 0 { counts[pattern] = nil }
            }
        }
        link.interestChanged()
    }

    /// Calls `done` once the other nodes of a cluster hold this node's interest and have
    /// committed what they accepted (see `ClusterLink.barrier`); at once on a single node.
    func clusterBarrier(_ done: @escaping @Sendable () -> Void) {
        guard let link else { return done() }
        link.barrier(done)
    }

    /// The patterns this node's dashboards hold, for the cluster.
    public var localPatterns: [String] {
        patternCounts.withLockedValue { $0.keys.map(\.text) }
    }

    /// `frames` without those at or below the device's highest seq already fanned out, nor
    /// any that does not follow the one before it; empty while the device's stream is
    /// repaired and `hold` is set (the frames wait, see `FanoutLedger`).
    private func unpublished(_ device: DeviceRecordRef, _ frames: [AcceptedFrame], from loop: any EventLoop, hold: Bool = false) -> [AcceptedFrame] {
        switch ledger.withLockedValue({ $0.offer(device, frames, from: loop, hold: hold) }) {
        case .publish(let floor):
            return Ledger.fresh(frames, above: floor)
        case .held(let dropped):
            if dropped > 0 { heldDropped.increment(by: Int64(dropped)) }
            return []
        }
    }

    /// Starts repairing, as a NATS outage begins, the streams of devices that dashboards here
    /// follow through other nodes (`isLocal` tells the devices connected here, which lost
    /// nothing). - Returns: each such device and the highest seq fanned out for it; its
    /// frames from other nodes are held until `endRepair`.
    public func beginRepair(isLocal: (String) -> Bool) -> [(device: DeviceRecordRef, after: UInt64)] {
        let known = ledger.withLockedValue { $0.devices }
        let followed = known.filter { !isLocal($0.device.id) && !index.matching($0.device.id).isEmpty }
        ledger.withLockedValue { $0.beginRepairs(keys: followed.lazy.map { $0.device.key }) }
        return followed.map { ($0.device, $0.seq) }
    }

    /// Frames read back from history for a repaired device, on `loop` (as `publishRemote`).
    public func publishRepaired(device: DeviceRecordRef, frames: [AcceptedFrame], on loop: EventLoop) {
        let fresh = unpublished(device, frames, from: loop)
        guard !fresh.isEmpty else { return }
        publishLocally(device: device.id, frames: fresh, on: batch(for: loop))
    }

    /// The device's history is fanned out: the frames held meanwhile follow, without repeats,
    /// from the loop that held them last (the ledger moves there first), so that loop's
    /// next frames come after them.
    public func endRepair(device: DeviceRecordRef, on loop: EventLoop) {
        switch ledger.withLockedValue({ $0.endRepair(device, on: loop) }) {
        case .moveTo(let holder):
            holder.execute { self.endRepair(device: device, on: holder) }
        case .publish(let held, let floor):
            let fresh = Ledger.fresh(held, above: floor)
            guard !fresh.isEmpty else { return }
            publishLocally(device: device.id, frames: fresh, on: batch(for: loop))
        }
    }

    /// Whether this node is part of a cluster.
    public var isClustered: Bool { link != nil }

    /// The highest seq of the device fanned out here (cluster mode); `nil` if none.
    func highestFannedOut(key: Int32) -> UInt64? {
        ledger.withLockedValue { $0.highest(key: key) }
    }

    /// Whether the device's latest presence event, from any node, says online; `nil` if none was seen.
    public func isOnline(key: Int32) -> Bool? {
        presence.withLockedValue { $0.isOnline(key: key) }
    }

    /// The batch of deliveries gathered on `loop`; use it only on that loop.
    func batch(for loop: EventLoop) -> FanoutBatch {
        batches.withLockedValue { batches in
            if let batch = batches[ObjectIdentifier(loop)] { return batch }
            let batch = FanoutBatch(loop: loop, link: link, mailboxes: mailboxes)
            batches[ObjectIdentifier(loop)] = batch
            return batch
        }
    }

    /// Accepted frames of a device connected here: to the nodes that want them (cluster
    /// mode), and to the dashboards here.
    ///
    /// Every accepted frame goes to the interested nodes, also one this node already had
    /// from the device's previous node: that node may have died before sending it to the
    /// others, and each receiver drops what it already fanned out. Here only what is new
    /// is delivered, and it waits while the device's stream is repaired.
    func publish(device: DeviceRecordRef, frames: [AcceptedFrame], on batch: FanoutBatch) {
        guard let link else { return publishLocally(device: device.id, frames: frames, on: batch) }
        let nodes = link.interestedNodes(for: device.id)
        if !nodes.isEmpty, !frames.isEmpty { batch.forward(device, frames: frames, to: nodes) }
        let fresh = unpublished(device, frames, from: batch.loop, hold: true)
        guard !fresh.isEmpty else { return }
        publishLocally(device: device.id, frames: fresh, on: batch)
    }

    /// Frames another node accepted (cluster mode), on `loop`: the thread that calls it,
    /// always the same one. Delivered here only, through the same path as local frames.
    public func publishRemote(device: DeviceRecordRef, frames: [AcceptedFrame], on loop: EventLoop) {
        let fresh = unpublished(device, frames, from: loop, hold: true)
        guard !fresh.isEmpty else { return }
        publishLocally(device: device.id, frames: fresh, on: batch(for: loop))
    }

    /// The work per subscription (text, writes) is the dashboard loops' (`LoopMailbox`).
    private func publishLocally(device: String, frames: [AcceptedFrame], on batch: FanoutBatch) {
        let subscriptions = index.matching(device)
        guard !subscriptions.isEmpty, !frames.isEmpty else { return }
        batch.publish(device: device, frames: frames, to: subscriptions)
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
        guard admit(key: device.key, device: device.id, session: session, online: online) else { return }
        let event = Presence(device: device.id, online: online, session: session, connection: connection, remote: remote, atMicros: atMicros)
        if let link {
            // Behind the frames gathered before it, as on this node.
            batch.flushRemote()
            link.presenceChanged(event, key: device.key)
        }
        deliver(event, on: batch)
    }

    /// A presence change another node announced (cluster mode), on `loop`: the thread
    /// that calls it, always the same one.
    public func publishRemotePresence(_ event: Presence, key: Int32, on loop: EventLoop) {
        guard admit(key: key, device: event.device, session: event.session, online: event.online) else { return }
        deliver(event, on: batch(for: loop))
    }

    /// Orders a presence event (see `PresenceOrder`). In a cluster, a device that dashboards
    /// here follow and that comes online in a newer session has its stream repaired: the
    /// node of its old session may have committed frames it never sent on (it died with
    /// them queued for NATS), and the device does not resend what was committed. From now
    /// on its frames wait, while the link reads history after the highest seq fanned out
    /// here (`ClusterLink.repairStream`). - Returns: whether to deliver the event.
    private func admit(key: Int32, device: String, session: Int64, online: Bool) -> Bool {
        let (admitted, earlier) = presence.withLockedValue { order in
            let earlier = order.session(key: key)
            return (order.admit(key: key, session: session, online: online), earlier)
        }
        guard admitted else { return false }
        guard let link, online, let earlier, earlier < session, !index.matching(device).isEmpty else { return true }
        if let after = ledger.withLockedValue({ $0.beginRepair(key: key) }) { link.repairStream(DeviceRecordRef(key: key, id: device), after: after) }
        return true
    }

    private func deliver(_ event: Presence, on batch: FanoutBatch) {
        let subscriptions = index.matching(event.device)
        guard !subscriptions.isEmpty else { return }
        let text = event.json
        var seen: Set<ObjectIdentifier> = []
        // One presence event per dashboard, however many of its subscriptions match.
        for subscription in subscriptions where seen.insert(ObjectIdentifier(subscription.dashboard)).inserted {
            batch.add(control: text, to: subscription.dashboard)
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
            .map { subscription.prefix + $0 }
    }
}

/// The mailbox of every dashboard event loop, made on first use.
final class Mailboxes: Sendable {
    private let limits: DashboardMailbox.State.Limits
    private let boxes = NIOLockedValueBox<[ObjectIdentifier: DashboardMailbox]>([:])

    init(limits: DashboardMailbox.State.Limits) {
        self.limits = limits
    }

    func mailbox(for loop: EventLoop) -> DashboardMailbox {
        boxes.withLockedValue { boxes in
            if let box = boxes[ObjectIdentifier(loop)] { return box }
            let box = DashboardMailbox(loop: loop, limits: limits)
            boxes[ObjectIdentifier(loop)] = box
            return box
        }
    }
}

/// What one event loop's current pass publishes, per dashboard loop; posted to the loops'
/// mailboxes when the pass ends. Touched only on its own loop.
final class FanoutBatch: @unchecked Sendable {
    let loop: EventLoop
    private let link: (any ClusterLink)?
    private let mailboxes: Mailboxes
    /// The mailboxes this loop has posted to, so the registry's lock is taken once per loop.
    private var known: [ObjectIdentifier: DashboardMailbox] = [:]
    private var pending: [ObjectIdentifier: (mailbox: DashboardMailbox, items: [DashboardMailbox.State.Item])] = [:]
    /// Frames for other nodes (cluster mode): one message per node per pass, at most
    /// `maxForwardBytes` each (a pass with more sends more).
    private var remote: [String: RemoteFrames.Writer] = [:]
    private var scheduled = false
    static let maxForwardBytes = 256 << 10

    init(loop: EventLoop, link: (any ClusterLink)?, mailboxes: Mailboxes) {
        self.loop = loop
        self.link = link
        self.mailboxes = mailboxes
    }

    /// Frames for other nodes, each frame encoded once however many nodes want it.
    func forward(_ device: DeviceRecordRef, frames: [AcceptedFrame], to nodes: [NodeInterest]) {
        let encoded = frames.map { (frame: $0, wire: $0.frame.encoded()) }
        for interest in nodes {
            remote[interest.node, default: RemoteFrames.Writer()].append(device, frames: encoded)
            if remote[interest.node]!.bytes.count >= Self.maxForwardBytes, let link {
                link.forward(remote[interest.node]!.take(), to: interest.node)
            }
        }
        schedule()
    }

    private func schedule() {
        if !scheduled {
            scheduled = true
            // Runs after the loop has handled the I/O it is processing now.
            loop.execute { self.sendNow() }
        }
    }

    private func append(_ item: DashboardMailbox.State.Item, for loop: EventLoop) {
        let key = ObjectIdentifier(loop)
        if pending[key] == nil {
            let box = known[key] ?? mailboxes.mailbox(for: loop)
            known[key] = box
            pending[key] = (box, [])
        }
        pending[key]!.items.append(item)
        schedule()
    }

    /// A device's frames for the subscriptions that match it: once to each loop that holds
    /// some of them, with how many.
    func publish(device: String, frames: [AcceptedFrame], to subscriptions: [LiveSubscription]) {
        var loops: [(loop: EventLoop, count: Int)] = []
        for subscription in subscriptions {
            let loop = subscription.dashboard.eventLoop
            if let at = loops.firstIndex(where: { $0.loop === loop }) {
                loops[at].count += 1
            } else {
                loops.append((loop, 1))
            }
        }
        for (loop, count) in loops {
            append(.publication(.init(device: device, frames: frames, subscriptions: subscriptions, local: count)), for: loop)
        }
    }

    /// A control message for one dashboard, behind what this pass published before it.
    func add(control text: String, to dashboard: DashboardHandler) {
        append(.control(dashboard, text), for: dashboard.eventLoop)
    }

    /// Sends the frames gathered for other nodes.
    func flushRemote() {
        guard !remote.isEmpty, let link else { return }
        for (node, var writer) in remote where !writer.isEmpty { link.forward(writer.take(), to: node) }
        remote = [:]
    }

    /// Posts what the pass gathered, in order per loop.
    func sendNow() {
        scheduled = false
        flushRemote()
        guard !pending.isEmpty else { return }
        let posts = pending
        pending = [:]
        for (_, post) in posts { post.mailbox.post(post.items) }
    }
}
