import HubProtocol
import NIOConcurrencyHelpers

/// Every metric name the hub has taken, hub-wide and per device, held to the limits of
/// contract section 7: a device may report at most `perDevice` distinct names, and the hub
/// holds at most `total`. A frame that would pass either is rejected whole with
/// `too_many_metrics` (see `DeviceMetrics`).
///
/// Names are admitted when a frame is accepted, before it is stored; the storage layer
/// records each (device, name) pair with the batch that first stores it (`device_metric`),
/// and the catalog is loaded from there at start.
///
/// Memory: about 100 bytes per name and per (device, name) pair, so at most about
/// `total` × 100 bytes plus devices × `perDevice` × 100 bytes at the limits.
/// Thread-safe: one lock, taken only when a connection meets a name it has not seen.
public final class MetricCatalog: Sendable {
    public struct Limits: Sendable {
        /// `--max-metrics-per-device`.
        public var perDevice = 1_000
        /// `--max-metrics`.
        public var total = 1_000_000

        public init() {}
    }

    private struct State {
        var names: Set<String> = []
        var byDevice: [Int32: Set<String>] = [:]
    }

    public let limits: Limits
    private let state = NIOLockedValueBox(State())

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Adds what storage holds: every name, and every (device key, name) pair. What was
    /// admitted in memory meanwhile stays.
    public func load(names: [String], pairs: [(device: Int32, name: String)]) {
        state.withLockedValue { state in
            state.names.formUnion(names)
            for pair in pairs {
                state.names.insert(pair.name)
                state.byDevice[pair.device, default: []].insert(pair.name)
            }
        }
    }

    /// The names `device` has reported: a connection's own copy for its fast path.
    public func names(of device: Int32) -> Set<String> {
        state.withLockedValue { $0.byDevice[device] ?? [] }
    }

    public var count: Int { state.withLockedValue { $0.names.count } }

    /// Takes `fresh` names for `device`, all or none.
    /// - Returns: why they cannot be taken, or `nil` once they are.
    public func admit(_ fresh: Set<String>, device: Int32) -> String? {
        state.withLockedValue { state in
            let known = state.byDevice[device] ?? []
            let new = fresh.subtracting(known)
            guard !new.isEmpty else { return nil }
            if known.count + new.count > limits.perDevice {
                return "the device would report more than \(limits.perDevice) metric names"
            }
            let unseen = new.filter { !state.names.contains($0) }.count
            if state.names.count + unseen > limits.total {
                return "the hub would hold more than \(limits.total) metric names"
            }
            state.names.formUnion(new)
            state.byDevice[device, default: []].formUnion(new)
            return nil
        }
    }
}

/// One connection's view of its device's metric names: names it has seen pass without a
/// lock; only a frame with a new name asks the catalog.
public struct DeviceMetrics: Sendable {
    private let device: Int32
    private let catalog: MetricCatalog
    private var known: Set<String>

    public init(device: Int32, catalog: MetricCatalog) {
        self.device = device
        self.catalog = catalog
        known = catalog.names(of: device)
    }

    /// - Returns: why the frame's names cannot be taken, or `nil` if they can.
    public mutating func admit(_ frame: TelemetryFrame) -> String? {
        var fresh: Set<String> = []
        for reading in frame.readings where !known.contains(reading.name) { fresh.insert(reading.name) }
        guard !fresh.isEmpty else { return nil }
        if let why = catalog.admit(fresh, device: device) { return why }
        known.formUnion(fresh)
        return nil
    }
}
