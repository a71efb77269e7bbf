import HubProtocol

/// A reading read back from storage.
public struct StoredReading: Sendable, Equatable {
    public var seq: UInt64
    public var metric: String
    public var tsMicros: Int64
    public var value: Value

    public init(seq: UInt64, metric: String, tsMicros: Int64, value: Value) {
        self.seq = seq
        self.metric = metric
        self.tsMicros = tsMicros
        self.value = value
    }
}

/// Stored telemetry, for replays. The storage layer implements it.
public protocol TelemetryHistory: Sendable {
    /// One page of a device's readings with `seq > afterSeq` (and, if given, time at or
    /// after `sinceMicros`, and metric in `metrics`), ordered by seq. A page holds whole
    /// frames only; an empty page means the end.
    func page(deviceKey: Int32, afterSeq: UInt64, sinceMicros: Int64?, metrics: Set<String>?) async throws -> [StoredReading]
}
