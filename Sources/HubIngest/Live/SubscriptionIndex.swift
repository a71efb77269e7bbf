import DequeModule
import NIOConcurrencyHelpers

/// Which subscriptions want a device's events.
///
/// The answer per device id is cached. An added subscription does not clear the cache: it
/// is logged, and a device's cached answer catches up with the additions made since it was
/// computed by testing only their patterns. So one dashboard subscribing costs ingest the
/// patterns of that subscription (at most `--max-patterns`), never the patterns every other
/// connection holds. A device whose answer is older than the log (``maxLoggedChanges``),
/// or new, is matched against every subscription once, bounded by the documented limits
/// (dashboards × subscriptions × patterns).
///
/// A removed subscription leaves every cached answer at once: the index knows which
/// devices' answers hold it, so nothing keeps a removed subscription (and the connection
/// it belongs to) alive, and no answer returns it. The index holds no weak references:
/// they would move every subscription's reference count to Swift's slow side table, and
/// the fan-out retains a subscription once per delivery.
///
/// The lock is held for dictionary work only: matching runs on a snapshot, outside it,
/// so a subscribe never waits behind a match, nor a frame behind a subscribe.
public final class SubscriptionIndex<Subscription: AnyObject & Sendable>: Sendable {
    private struct Live {
        /// The generation its addition made: tells a logged addition from a later
        /// subscription that reuses the same object identifier.
        var added: UInt64
        var patterns: [DevicePattern]
        var subscription: Subscription
    }

    private struct Change {
        /// The generation this change made.
        var generation: UInt64
        var key: ObjectIdentifier
        /// Whether it added the subscription (or removed it).
        var isAddition: Bool
    }

    private struct Cached {
        var generation: UInt64
        var matches: [ObjectIdentifier: Subscription]
        /// `matches.values`, built on first use after a change.
        var list: [Subscription]?
    }

    /// What `matching` found under the lock.
    private enum Work {
        case done([Subscription])
        case catchUp(Cached, [(key: ObjectIdentifier, live: Live)], generation: UInt64)
        case full(exact: [ObjectIdentifier: Subscription], globs: [ObjectIdentifier: Live], generation: UInt64)
    }

    private struct State {
        var live: [ObjectIdentifier: Live] = [:]
        var exact: [String: [ObjectIdentifier: Subscription]] = [:]
        var globs: [ObjectIdentifier: Live] = [:]
        var generation: UInt64 = 0
        var changes = Deque<Change>()
        /// The cached answers, in slots: `slots` gives a device's.
        var slots: [String: Int] = [:]
        var cache: [Cached] = []
        /// The slots whose cached answer holds each subscription (4 bytes per match).
        var holders: [ObjectIdentifier: [Int32]] = [:]
    }

    /// The cache holds at most this many device ids; past it, it starts over.
    public static var maxCachedDevices: Int { 100_000 }
    /// Changes kept for cached answers to catch up with (about 40 bytes each).
    public static var maxLoggedChanges: Int { 4_096 }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func add(_ subscription: Subscription, patterns: [DevicePattern]) {
        let key = ObjectIdentifier(subscription)
        state.withLockedValue { state in
            let generation = Self.log(key: key, isAddition: true, in: &state)
            var globs: [DevicePattern] = []
            for pattern in patterns {
                switch pattern {
                case .exact(let id): state.exact[id, default: [:]][key] = subscription
                case .glob: globs.append(pattern)
                }
            }
            state.live[key] = Live(added: generation, patterns: patterns, subscription: subscription)
            if !globs.isEmpty { state.globs[key] = Live(added: generation, patterns: globs, subscription: subscription) }
        }
    }

    public func remove(_ subscription: Subscription, patterns: [DevicePattern]) {
        let key = ObjectIdentifier(subscription)
        state.withLockedValue { state in
            guard state.live.removeValue(forKey: key) != nil else { return }
            for case .exact(let id) in patterns {
                state.exact[id]?[key] = nil
                if state.exact[id]?.isEmpty == true { state.exact[id] = nil }
            }
            state.globs[key] = nil
            for slot in state.holders.removeValue(forKey: key) ?? [] {
                state.cache[Int(slot)].matches[key] = nil
                state.cache[Int(slot)].list = nil
            }
            _ = Self.log(key: key, isAddition: false, in: &state)
        }
    }

    /// The subscriptions matching `device`, each once.
    public func matching(_ device: String) -> [Subscription] {
        // Under the lock: the cached answer if current, or what it takes to bring it up to date.
        let work: Work = state.withLockedValue { state in
            if let slot = state.slots[device] {
                let cached = state.cache[slot]
                if cached.generation == state.generation {
                    if let list = cached.list { return .done(list) }
                    let list = Array(cached.matches.values)
                    state.cache[slot].list = list
                    return .done(list)
                }
                if let first = state.changes.first, first.generation <= cached.generation + 1 {
                    // The additions since, still live and not a later subscription in the
                    // same place (removals already left the cached answer).
                    let start = state.changes.count - Int(state.generation - cached.generation)
                    var added: [(key: ObjectIdentifier, live: Live)] = []
                    for change in state.changes[start...] where change.isAddition {
                        if let live = state.live[change.key], live.added == change.generation {
                            added.append((change.key, live))
                        }
                    }
                    return .catchUp(cached, added, generation: state.generation)
                }
            }
            return .full(exact: state.exact[device] ?? [:], globs: state.globs, generation: state.generation)
        }
        let fresh: Cached
        switch work {
        case .done(let list):
            return list
        case .catchUp(var cached, let added, let generation):
            for (key, live) in added where live.patterns.contains(where: { $0.matches(device) }) {
                cached.matches[key] = live.subscription
                cached.list = nil
            }
            cached.generation = generation
            if cached.list == nil { cached.list = Array(cached.matches.values) }
            fresh = cached
        case .full(let exact, let globs, let generation):
            var found = exact
            for (key, live) in globs where found[key] == nil {
                if live.patterns.contains(where: { $0.matches(device) }) { found[key] = live.subscription }
            }
            fresh = Cached(generation: generation, matches: found, list: Array(found.values))
        }
        state.withLockedValue { Self.store(fresh, for: device, in: &$0) }
        return fresh.list ?? []
    }

    /// Keeps an answer computed outside the lock. Subscriptions removed meanwhile leave it
    /// first (their removal could not reach it); additions meanwhile wait for the next
    /// catch-up. An answer older than the log, or than the one kept, is dropped.
    private static func store(_ answer: Cached, for device: String, in state: inout State) {
        var fresh = answer
        if state.generation != fresh.generation {
            guard let first = state.changes.first, first.generation <= fresh.generation + 1 else { return }
            let start = state.changes.count - Int(state.generation - fresh.generation)
            for change in state.changes[start...] where !change.isAddition {
                if fresh.matches.removeValue(forKey: change.key) != nil { fresh.list = nil }
            }
        }
        if let slot = state.slots[device] {
            guard state.cache[slot].generation <= fresh.generation else { return }
            // What it held is still live (removals left it at once): note the new matches.
            for key in fresh.matches.keys where state.cache[slot].matches[key] == nil {
                state.holders[key, default: []].append(Int32(slot))
            }
            state.cache[slot] = fresh
            return
        }
        if state.cache.count >= maxCachedDevices {
            state.slots = [:]
            state.cache = []
            state.holders = [:]
        }
        let slot = state.cache.count
        state.slots[device] = slot
        state.cache.append(fresh)
        for key in fresh.matches.keys { state.holders[key, default: []].append(Int32(slot)) }
    }

    public var isEmpty: Bool { state.withLockedValue { $0.live.isEmpty } }

    /// Logs a change and returns the generation it made.
    private static func log(key: ObjectIdentifier, isAddition: Bool, in state: inout State) -> UInt64 {
        state.generation += 1
        state.changes.append(Change(generation: state.generation, key: key, isAddition: isAddition))
        if state.changes.count > maxLoggedChanges { state.changes.removeFirst() }
        return state.generation
    }
}
