import HubIngest
import HubProtocol

/// One `subscribe` of one dashboard connection.
final class LiveSubscription: Sendable {
    let id: String
    let patterns: [DevicePattern]
    /// `nil` means every metric.
    let metrics: Set<String>?
    /// At most one event per device and metric per this interval (`max_rate_hz`), if set.
    let minIntervalNanos: UInt64?
    /// The start of each of its telemetry messages, made once.
    let prefix: String
    /// Strong: events in flight may outlive the connection; the handler breaks the cycle
    /// by dropping its subscriptions when it is removed.
    let dashboard: DashboardHandler

    init(id: String, patterns: [DevicePattern], metrics: Set<String>?, maxRateHz: Double?, dashboard: DashboardHandler) {
        self.id = id
        self.patterns = patterns
        self.metrics = metrics
        // The rate is checked to lie in `SubscribeRequest.rateRange`; clamped again here so
        // that no rate can make the conversion trap.
        minIntervalNanos = maxRateHz.map { UInt64(min(1e12, max(1e6, (1e9 / $0).rounded()))) }
        self.dashboard = dashboard
        prefix = TelemetryJSON.prefix(sub: id)
    }

    /// The readings of `frame` this subscription wants.
    func readings(of frame: AcceptedFrame) -> [ConflatedReading] {
        frame.frame.readings.compactMap { reading in
            guard metrics?.contains(reading.name) ?? true else { return nil }
            return ConflatedReading(
                seq: frame.frame.seq, metric: reading.name, tsMicros: frame.baseMicros + Int64(reading.offsetMicros),
                value: reading.value)
        }
    }
}

/// One reading held back for a subscription (conflation, rate limit, replay).
struct ConflatedReading: Sendable {
    var seq: UInt64
    var metric: String
    var tsMicros: Int64
    var value: Value
}
