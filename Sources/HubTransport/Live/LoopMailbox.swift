import DequeModule
import HubIngest
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// A subscription as the fan-out mailbox sees it.
protocol FanoutSubscription: AnyObject {
    associatedtype Target: AnyObject
    /// The dashboard it belongs to.
    var target: Target { get }
    /// `nil` means every metric.
    var metrics: Set<String>? { get }
}

/// What waits for the dashboards of one event loop, from every loop's fan-out: the
/// overload policy, as a value type with no I/O.
///
/// A publishing loop posts each device's frames once per pass, with the subscriptions that
/// matched the device, not one event per subscription: the work per subscription (the text,
/// the write) is done by this loop's drain, a slice at a time. So publishing costs a device's
/// loop the same however many dashboards follow it, and acks and other tasks of this loop
/// run between slices.
///
/// Posts queue in order up to `Limits.maxDeliveries` (frames × subscriptions) and
/// `Limits.maxBytes`. Past either, until the queue has been taken, frames are not queued:
/// each device keeps only its newest frame per metric and a count of the readings per metric
/// (`Latest`). What a loop that cannot keep up holds is bounded by the limits plus one entry
/// per (device, metric) published meanwhile, however long the overload lasts; each
/// subscription later gets the newest readings and, in `lagged`, how many it missed.
/// Control messages (presence) always queue: they are few.
struct LoopMailbox<Subscription: FanoutSubscription> {
    typealias Target = Subscription.Target

    struct Limits {
        /// Frames × subscriptions queued before frames are conflated.
        var maxDeliveries = 100_000
        /// What the queued frames and messages hold, about, in bytes.
        var maxBytes = 8 << 20
        /// Deliveries one drain task makes before it yields the loop to other work.
        var sliceDeliveries = 4_096
    }

    /// Frames of one device from one pass, and the subscriptions that matched it then.
    struct Publication {
        var device: String
        var frames: [AcceptedFrame]
        /// On every loop: each loop's drain skips those of the others.
        var subscriptions: [Subscription]
        /// How many of them are on this mailbox's loop.
        var local: Int
    }

    enum Item {
        case publication(Publication)
        case control(Target, String)
    }

    /// One device's readings while conflating.
    struct Latest {
        /// The subscriptions that matched it at its newest frame.
        var subscriptions: [Subscription]
        var newest: [String: AcceptedFrame] = [:]
        /// Readings seen per metric since conflation began, the kept ones included.
        var counts: [String: Int] = [:]
        var seq: UInt64 = 0
    }

    /// What one drain task delivers: queued items in order, or (once the queue is empty)
    /// the conflated devices.
    enum Slice {
        case items([Item])
        case conflated([String: Latest])
        case none
    }

    let limits: Limits
    private var queue = Deque<Item>()
    private(set) var deliveries = 0
    private(set) var bytes = 0
    private var latest: [String: Latest] = [:]
    /// Over a limit: frames are conflated until the queue has been taken.
    private(set) var isConflating = false
    private var drainAsked = false

    init(limits: Limits) {
        self.limits = limits
    }

    var isEmpty: Bool { queue.isEmpty && latest.isEmpty }

    /// A device's frames, in seq order (see `Publication`).
    /// - Returns: whether the caller must ask for a drain.
    mutating func publish(_ publication: Publication) -> Bool {
        let (device, frames, subscriptions) = (publication.device, publication.frames, publication.subscriptions)
        guard !frames.isEmpty, publication.local > 0 else { return false }
        let cost = (frames.count * publication.local, frames.reduce(48 + device.utf8.count) { $0 + Self.bytes(of: $1) })
        if !isConflating, queue.isEmpty || (deliveries + cost.0 <= limits.maxDeliveries && bytes + cost.1 <= limits.maxBytes) {
            queue.append(.publication(publication))
            deliveries += cost.0
            bytes += cost.1
        } else {
            isConflating = true
            var entry = latest.removeValue(forKey: device) ?? Latest(subscriptions: subscriptions)
            entry.subscriptions = subscriptions
            for frame in frames where frame.frame.seq > entry.seq {
                entry.seq = frame.frame.seq
                for reading in frame.frame.readings {
                    entry.newest[reading.name] = frame
                    entry.counts[reading.name, default: 0] += 1
                }
            }
            latest[device] = entry
        }
        return askDrain()
    }

    /// A control message for one dashboard, after everything posted before.
    mutating func post(control text: String, to target: Target) -> Bool {
        queue.append(.control(target, text))
        bytes += 48 + text.utf8.count
        return askDrain()
    }

    /// The next slice to deliver: queued items up to `Limits.sliceDeliveries` (at least one),
    /// else the conflated devices. - Returns: the slice, and whether more waits (the drain
    /// then goes on in a new task; otherwise the next post asks for one).
    mutating func takeSlice() -> (slice: Slice, more: Bool) {
        if !queue.isEmpty {
            var items: [Item] = []
            var taken = 0
            while let item = queue.first, items.isEmpty || taken + Self.deliveries(of: item) <= limits.sliceDeliveries {
                queue.removeFirst()
                taken += Self.deliveries(of: item)
                bytes -= Self.bytes(of: item)
                items.append(item)
            }
            deliveries -= items.reduce(0) { $0 + Self.deliveries(of: $1) }
            if queue.isEmpty { (deliveries, bytes) = (0, 0) }
            // Conflation lasts until the queue it overflowed has gone out.
            if queue.isEmpty && latest.isEmpty { isConflating = false }
            return finish(.items(items))
        }
        guard !latest.isEmpty else { return finish(.none) }
        let conflated = latest
        latest = [:]
        isConflating = false
        return finish(.conflated(conflated))
    }

    private mutating func finish(_ slice: Slice) -> (slice: Slice, more: Bool) {
        let more = !isEmpty
        drainAsked = more
        return (slice, more)
    }

    private mutating func askDrain() -> Bool {
        defer { drainAsked = true }
        return !drainAsked
    }

    private static func deliveries(of item: Item) -> Int {
        switch item {
        case .publication(let publication): publication.frames.count * publication.local
        case .control: 1
        }
    }

    private static func bytes(of item: Item) -> Int {
        switch item {
        case .publication(let publication): publication.frames.reduce(48 + publication.device.utf8.count) { $0 + bytes(of: $1) }
        case .control(_, let text): 48 + text.utf8.count
        }
    }

    private static func bytes(of frame: AcceptedFrame) -> Int {
        frame.frame.readings.reduce(40) { $0 + 32 + $1.name.utf8.count + $1.value.heapBytes }
    }

    /// What a conflated device gives one subscription: the frames holding its newest
    /// reading of each metric it wants (cut down to those readings, oldest first), and how
    /// many readings it missed.
    static func kept(_ latest: Latest, for subscription: Subscription) -> (frames: [AcceptedFrame], dropped: Int) {
        let wanted = subscription.metrics.map { metrics in latest.newest.filter { metrics.contains($0.key) } } ?? latest.newest
        let dropped = wanted.keys.reduce(0) { $0 + max(0, (latest.counts[$1] ?? 1) - 1) }
        return (AcceptedFrame.newest(wanted), dropped)
    }
}

extension Value {
    /// Bytes a value holds outside its reading.
    var heapBytes: Int {
        if case .string(let text) = self { return text.utf8.count }
        return 0
    }
}

extension AcceptedFrame {
    /// The frames that hold the newest reading of each metric (metric → its frame), oldest
    /// first, each cut down to the readings kept from it.
    static func newest(_ byMetric: [String: AcceptedFrame]) -> [AcceptedFrame] {
        var bySeq: [UInt64: (frame: AcceptedFrame, metrics: Set<String>)] = [:]
        for (metric, frame) in byMetric { bySeq[frame.frame.seq, default: (frame, [])].metrics.insert(metric) }
        return bySeq.sorted { $0.key < $1.key }.map { _, kept in
            var frame = kept.frame.frame
            frame.readings = frame.readings.filter { kept.metrics.contains($0.name) }
            return AcceptedFrame(frame: frame, receivedAtMicros: kept.frame.receivedAtMicros)
        }
    }
}

extension LiveSubscription: FanoutSubscription {
    var target: DashboardHandler { dashboard }
}

/// The shell around one event loop's `LoopMailbox`: any loop posts, this loop drains, one
/// slice per task.
final class DashboardMailbox: @unchecked Sendable {
    typealias State = LoopMailbox<LiveSubscription>
    let loop: EventLoop
    private let lock = NIOLock()
    private var state: State

    init(loop: EventLoop, limits: State.Limits) {
        self.loop = loop
        state = LoopMailbox(limits: limits)
    }

    static let yield = TimeAmount.microseconds(50)

    /// What one pass of a publishing loop gathered for this loop, in order.
    func post(_ items: [State.Item]) {
        let ask = lock.withLock {
            var ask = false
            for item in items {
                switch item {
                case .publication(let publication):
                    if state.publish(publication) { ask = true }
                case .control(let dashboard, let text):
                    if state.post(control: text, to: dashboard) { ask = true }
                }
            }
            return ask
        }
        if ask { loop.execute { self.drain() } }
    }

    private func drain() {
        let (slice, more) = lock.withLock { state.takeSlice() }
        switch slice {
        case .items(let items): deliver(items)
        case .conflated(let latest): deliver(latest)
        case .none: break
        }
        // An event loop runs every ready task before it reads its sockets again, the tasks
        // that tasks add among them: a continuation due a little later lets it read (device
        // frames, acks) between slices.
        if more { loop.scheduleTask(in: Self.yield) { self.drain() } }
    }

    /// Each dashboard gets its events of the slice in order, with one flush.
    private func deliver(_ items: [State.Item]) {
        var byDashboard = Gathered()
        for item in items {
            switch item {
            case .control(let dashboard, let text):
                byDashboard.add([.control(text)], to: dashboard)
            case .publication(let publication):
                var bodies: [Set<String>?: [String?]] = [:]
                for subscription in publication.subscriptions where subscription.dashboard.eventLoop === loop {
                    // A dashboard that conflates takes readings, not text: none is made for it.
                    guard !subscription.dashboard.isBacklogged else {
                        byDashboard.add(
                            publication.frames.map { .telemetry(subscription: subscription, device: publication.device, frame: $0, text: nil) },
                            to: subscription.dashboard)
                        continue
                    }
                    let filter = subscription.metrics
                    let encoded = bodies[filter] ?? publication.frames.map {
                        TelemetryJSON.body(device: publication.device, frame: $0.frame, baseMicros: $0.baseMicros, metrics: filter)
                    }
                    bodies[filter] = encoded
                    byDashboard.add(
                        zip(publication.frames, encoded).compactMap { frame, body in
                            body.map { .telemetry(subscription: subscription, device: publication.device, frame: frame, text: subscription.prefix + $0) }
                        },
                        to: subscription.dashboard)
                }
            }
        }
        for (dashboard, events) in byDashboard.inOrder { dashboard.deliver(events) }
    }

    /// Each dashboard on this loop that follows a conflated device gets its newest readings
    /// and, per subscription, how many it missed.
    private func deliver(_ latest: [String: State.Latest]) {
        var byDashboard = Gathered()
        var dropped: [ObjectIdentifier: [(LiveSubscription, Int)]] = [:]
        for (device, entry) in latest {
            // Worked out once per metric filter, as the queued path builds text.
            var byFilter: [Set<String>?: (frames: [AcceptedFrame], bodies: [String?], missed: Int)] = [:]
            for subscription in entry.subscriptions where subscription.dashboard.eventLoop === loop {
                let filter = subscription.metrics
                let kept = byFilter[filter] ?? {
                    let (frames, missed) = State.kept(entry, for: subscription)
                    let bodies = frames.map { TelemetryJSON.body(device: device, frame: $0.frame, baseMicros: $0.baseMicros, metrics: filter) }
                    return (frames, bodies, missed)
                }()
                byFilter[filter] = kept
                let backlogged = subscription.dashboard.isBacklogged
                byDashboard.add(
                    zip(kept.frames, kept.bodies).map { frame, body in
                        .telemetry(
                            subscription: subscription, device: device, frame: frame,
                            text: backlogged ? nil : body.map { subscription.prefix + $0 })
                    },
                    to: subscription.dashboard)
                if kept.missed > 0 { dropped[ObjectIdentifier(subscription.dashboard), default: []].append((subscription, kept.missed)) }
            }
        }
        for (dashboard, events) in byDashboard.inOrder {
            dashboard.deliverConflated(events, dropped: dropped[ObjectIdentifier(dashboard)] ?? [])
        }
    }

    /// Events per dashboard, dashboards in the order first seen.
    private struct Gathered {
        private var index: [ObjectIdentifier: Int] = [:]
        private(set) var inOrder: [(DashboardHandler, [LiveEvent])] = []

        mutating func add(_ events: [LiveEvent], to dashboard: DashboardHandler) {
            guard !events.isEmpty else { return }
            if let at = index[ObjectIdentifier(dashboard)] {
                inOrder[at].1 += events
            } else {
                index[ObjectIdentifier(dashboard)] = inOrder.count
                inOrder.append((dashboard, events))
            }
        }
    }
}
