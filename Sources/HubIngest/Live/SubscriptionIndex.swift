import NIOConcurrencyHelpers

/// Which subscriptions want a device's events.
///
/// Exact ids are a dictionary lookup. Globs are matched once per device id and the answer
/// cached, so the work per frame is the number of matching subscriptions, however many
/// non-matching ones exist; a change to the subscriptions clears the cache.
/// Thread-safe: one lock, held for dictionary work only.
public final class SubscriptionIndex<Subscription: AnyObject & Sendable>: Sendable {
    private struct State {
        var exact: [String: [ObjectIdentifier: Subscription]] = [:]
        var globs: [ObjectIdentifier: (patterns: [DevicePattern], subscription: Subscription)] = [:]
        var cache: [String: [Subscription]] = [:]
    }

    /// The cache holds at most this many device ids; past it, it starts over.
    public static var maxCachedDevices: Int { 100_000 }

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
            if !globs.isEmpty { state.globs[key] = (globs, subscription) }
            state.cache = [:]
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
            state.cache = [:]
        }
    }

    /// The subscriptions matching `device`, each once.
    public func matching(_ device: String) -> [Subscription] {
        state.withLockedValue { state in
            if let cached = state.cache[device] { return cached }
            var found: [ObjectIdentifier: Subscription] = state.exact[device] ?? [:]
            for (key, entry) in state.globs where found[key] == nil {
                if entry.patterns.contains(where: { $0.matches(device) }) { found[key] = entry.subscription }
            }
            if state.cache.count >= Self.maxCachedDevices { state.cache = [:] }
            let result = Array(found.values)
            state.cache[device] = result
            return result
        }
    }

    public var isEmpty: Bool { state.withLockedValue { $0.exact.isEmpty && $0.globs.isEmpty } }
}
