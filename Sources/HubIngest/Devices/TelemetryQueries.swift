import HubProtocol

/// Aggregates the REST API computes per metric and time bucket.
public enum Aggregate: String, Sendable, CaseIterable {
    case avg, min, max, sum, count, last
}

/// A row of a REST telemetry answer: a stored reading, or one bucket's aggregate.
public struct TelemetryRow: Sendable, Equatable {
    public var tsMicros: Int64
    public var metric: String
    /// The frame's seq (raw rows only).
    public var seq: UInt64?
    /// `nil` when a bucket has no value of that kind (e.g. `avg` of strings).
    public var value: Value?

    public init(tsMicros: Int64, metric: String, seq: UInt64?, value: Value?) {
        self.tsMicros = tsMicros
        self.metric = metric
        self.seq = seq
        self.value = value
    }
}

/// Stored telemetry for the REST API; the storage layer implements it. Time ranges are
/// half-open: `from` inclusive, `to` exclusive. Booleans read back as stored, 0 or 1.
public protocol TelemetryQueries: Sendable {
    func raw(deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, limit: Int) async throws -> [TelemetryRow]
    func buckets(
        deviceKey: Int32, metric: String?, fromMicros: Int64?, toMicros: Int64?, bucketSeconds: Int64, aggregate: Aggregate,
        limit: Int
    ) async throws -> [TelemetryRow]
    func latest(deviceKey: Int32) async throws -> [TelemetryRow]
}
