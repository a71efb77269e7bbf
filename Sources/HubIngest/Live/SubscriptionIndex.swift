import DequeModule
import NIOConcurrencyHelpers

/// Which subscriptions want a device's events.
///
/// The answer per device id is cached. A change to the subscriptions does not clear the
/// cache: it is logged, and a device's cached answer catches up with the changes made
/// since it was computed by testing only the patterns of the subscriptions that changed.
/// So one dashboard subscribing and unsubscribing costs ingest the patterns of that
/// subscription (at most `--max-patterns`), never the patterns every other connection
/// holds. A device whose answer is older than the log (``maxLoggedChanges``), or new, is
/// matched against every subscription once, bounded by the documented limits (dashboards
/// × subscriptions × patterns).
///
/// The lock is held for dictionary work only: matching runs on a snapshot, outside it,
/// so a subscribe never waits behind a match, nor a frame behind a subscribe.
public final class SubscriptionIndex<Subscription: AnyObject & Sendable>: Sendable {
    private struct Entry {
        var patterns: [DevicePattern]
        var subscription: Subscription
    }

    /// Held weakly by the log and the cache: neither keeps a removed subscription (and the
    /// connection it belongs to) alive. A cached answer catches up before it is used, so a
    /// removed subscription is never returned.
    private struct Weak {
        weak var subscription: Subscription?
    }

    private struct Change {
        /// The generation this change made.
        var generation: UInt64
        var key: ObjectIdentifier
        /// The patterns of an addition; `nil` for a removal.
        var patterns: [DevicePattern]?
        var subscription: Weak
    }

    private struct Cached {
        var generation: UInt64
        var matches: [ObjectIdentifier: Weak]
    }

    /// What `matching` found under the lock.
    private enum Work {
        case done(Cached)
        case catchUp(Cached, Slice<Deque<Change>>, generation: UInt64)
        case full(exact: [ObjectIdentifier: Subscription], globs: [ObjectIdentifier: Entry], generation: UInt64)
    }

    private struct State {
        var exact: [String: [ObjectIdentifier: Subscription]] = [:]
        var globs: [ObjectIdentifier: Entry] = [:]
        var generation: UInt64 = 0
        var changes = Deque<Change>()
        var cache: [String: Cached] = [:]
    }

    /// The cache holds at most this many device ids; past it, it starts over.
    public static var maxCachedDevices: Int { 100_000 }
    /// Changes kept for cached answers to catch up with (about 100 bytes each, plus the
    /// patterns they share with their subscription).
    public static var maxLoggedChanges: Int { 4_096 }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func add(_ subscription: Subscription, patterns: [DevicePattern]) {
        let key = ObjectIdentifier(subscription)
        state.withLockedValue { state in
            var globs: [DevicePattern] = []
            for pattern in patterns {
                switch pattern {
                case .exact(let id): state.exact[id, default: [:]][key] = subscription
                case .glob: globs.append(pattern)
                }
            }
            if !globs.isEmpty { state.globs[key] = Entry(patterns: globs, subscription: subscription) }
            Self.log(Change(generation: 0, key: key, patterns: patterns, subscription: Weak(subscription: subscription)), in: &state)
        }
    }

    public func remove(_ subscription: Subscription, patterns: [DevicePattern]) {
        let key = ObjectIdentifier(subscription)
        state.withLockedValue { state in
            for case .exact(let id) in patterns {
                state.exact[id]?[key] = nil
                if state.exact[id]?.isEmpty == true { state.exact[id] = nil }
            }
            state.globs[key] = nil
            Self.log(Change(generation: 0, key: key, patterns: nil, subscription: Weak(subscription: nil)), in: &state)
        }
    }

    /// The subscriptions matching `device`, each once.
    public func matching(_ device: String) -> [Subscription] {
        // Under the lock: the cached answer if current, or what it takes to bring it up to date.
        let work: Work = state.withLockedValue { state in
            if let cached = state.cache[device] {
                if cached.generation == state.generation { return .done(cached) }
                if let first = state.changes.first, first.generation <= cached.generation + 1 {
                    let start = state.changes.count - Int(state.generation - cached.generation)
                    return .catchUp(cached, state.changes[start...], generation: state.generation)
                }
            }
            return .full(exact: state.exact[device] ?? [:], globs: state.globs, generation: state.generation)
        }
        let fresh: Cached
        switch work {
        case .done(let cached):
            return cached.matches.values.compactMap(\.subscription)
        case .catchUp(var cached, let changes, let generation):
            for change in changes {
                if let patterns = change.patterns {
                    if patterns.contains(where: { $0.matches(device) }) { cached.matches[change.key] = change.subscription }
                } else {
                    cached.matches[change.key] = nil
                }
            }
            cached.generation = generation
            fresh = cached
        case .full(let exact, let globs, let generation):
            var found = exact.mapValues { Weak(subscription: $0) }
            for (key, entry) in globs where found[key] == nil {
                if entry.patterns.contains(where: { $0.matches(device) }) { found[key] = Weak(subscription: entry.subscription) }
            }
            fresh = Cached(generation: generation, matches: found)
        }
        state.withLockedValue { state in
            guard (state.cache[device]?.generation ?? 0) <= fresh.generation else { return }
            if state.cache[device] == nil, state.cache.count >= Self.maxCachedDevices { state.cache = [:] }
            state.cache[device] = fresh
        }
        return fresh.matches.values.compactMap(\.subscription)
    }

    public var isEmpty: Bool { state.withLockedValue { $0.exact.isEmpty && $0.globs.isEmpty } }

    private static func log(_ change: Change, in state: inout State) {
        state.generation += 1
        var change = change
        change.generation = state.generation
        state.changes.append(change)
        if state.changes.count > maxLoggedChanges { state.changes.removeFirst() }
    }
}
