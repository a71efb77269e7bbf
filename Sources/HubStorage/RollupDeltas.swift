import HubProtocol
import Postgres

/// Minute aggregates per (device, metric, minute): of one ingest batch, or of the batches a
/// writer committed since it last wrote them to `rollup_delta` (``PostgresIngestSink``).
struct RollupDeltas {
    struct Key: Hashable {
        var device: Int32
        var metric: Int32
        /// The minute's start, in microseconds since the Unix epoch.
        var minute: Int64
    }

    /// One reading at the edge of a bucket: first or last by (ts, seq).
    struct Point {
        var ts: Int64
        var seq: Int64
        var type: Int16
        var number: Double?
        var text: String?

        func isBefore(_ other: Point) -> Bool { (ts, seq) < (other.ts, other.seq) }
    }

    struct Aggregate {
        var count: Int64 = 0
        var valueCount: Int64 = 0
        var sum: Double?
        var min: Double?
        var max: Double?
        var first: Point
        var last: Point
        /// The lowest and highest seq of the minute's readings (replay by seq uses them).
        var minSeq: Int64
        var maxSeq: Int64
    }

    private(set) var entries: [Key: Aggregate] = [:]

    mutating func add(device: Int32, metric: Int32, tsMicros: Int64, seq: Int64, value: Value) {
        let number: Double?
        var text: String?
        switch value {
        case .f64(let double): number = double
        case .i64(let int): number = Double(int)
        case .bool(let bool): number = bool ? 1 : 0
        case .string(let string):
            number = nil
            text = string
        }
        let point = Point(ts: tsMicros, seq: seq, type: Int16(value.typeCode), number: number, text: text)
        let minute = tsMicros >= 0 ? tsMicros / 60_000_000 * 60_000_000 : (tsMicros - 59_999_999) / 60_000_000 * 60_000_000
        let key = Key(device: device, metric: metric, minute: minute)
        // Updated in place: no copy of the entry out of the dictionary and back per reading.
        Self.merge(point, into: &entries[key, default: Aggregate(first: point, last: point, minSeq: seq, maxSeq: seq)])
    }

    /// The number of (device, metric, minute) aggregates held.
    var count: Int { entries.count }

    /// Adds another batch's aggregates to these.
    mutating func merge(_ other: RollupDeltas) {
        if entries.isEmpty {
            entries = other.entries
            return
        }
        for (key, aggregate) in other.entries {
            if let index = entries.index(forKey: key) {
                Self.merge(aggregate, into: &entries.values[index])
            } else {
                entries[key] = aggregate
            }
        }
    }

    private static func merge(_ part: Aggregate, into aggregate: inout Aggregate) {
        aggregate.count += part.count
        aggregate.valueCount += part.valueCount
        if let sum = part.sum { aggregate.sum = (aggregate.sum ?? 0) + sum }
        if let min = part.min { aggregate.min = Swift.min(aggregate.min ?? min, min) }
        if let max = part.max { aggregate.max = Swift.max(aggregate.max ?? max, max) }
        aggregate.minSeq = Swift.min(aggregate.minSeq, part.minSeq)
        aggregate.maxSeq = Swift.max(aggregate.maxSeq, part.maxSeq)
        if part.first.isBefore(aggregate.first) { aggregate.first = part.first }
        if aggregate.last.isBefore(part.last) { aggregate.last = part.last }
    }

    private static func merge(_ point: Point, into aggregate: inout Aggregate) {
        aggregate.count += 1
        if let number = point.number {
            aggregate.valueCount += 1
            aggregate.sum = (aggregate.sum ?? 0) + number
            aggregate.min = Swift.min(aggregate.min ?? number, number)
            aggregate.max = Swift.max(aggregate.max ?? number, number)
        }
        if point.seq < aggregate.minSeq { aggregate.minSeq = point.seq }
        if point.seq > aggregate.maxSeq { aggregate.maxSeq = point.seq }
        if point.isBefore(aggregate.first) { aggregate.first = point }
        if aggregate.last.isBefore(point) { aggregate.last = point }
    }

    /// `COPY rollup_delta … (FORMAT binary)` data, and its row count.
    func encoded() -> ([UInt8], Int) {
        var encoder = BinaryCopyEncoder(reservingCapacity: entries.count * 120 + 64)
        func optional(_ value: Double?) { if let value { encoder.appendDouble(value) } else { encoder.appendNull() } }
        func point(_ point: Point) {
            encoder.appendTimestamp(unixMicros: point.ts)
            encoder.appendInt64(point.seq)
            encoder.appendInt16(point.type)
            optional(point.number)
            if let text = point.text { encoder.appendText(text) } else { encoder.appendNull() }
        }
        for (key, aggregate) in entries {
            encoder.beginRow(fields: 20)
            encoder.appendInt32(key.device)
            encoder.appendInt32(key.metric)
            encoder.appendTimestamp(unixMicros: key.minute)
            encoder.appendInt64(aggregate.count)
            encoder.appendInt64(aggregate.valueCount)
            optional(aggregate.sum)
            optional(aggregate.min)
            optional(aggregate.max)
            point(aggregate.first)
            point(aggregate.last)
            encoder.appendInt64(aggregate.minSeq)
            encoder.appendInt64(aggregate.maxSeq)
        }
        return (encoder.rowCount > 0 ? encoder.finish() : [], encoder.rowCount)
    }

    static let copyStatement = """
        COPY rollup_delta (device_key, metric_key, bucket, count, value_count, sum, min, max,
            first_ts, first_seq, first_type, first_value, first_text, last_ts, last_seq, last_type, last_value, last_text,
            min_seq, max_seq)
        FROM STDIN (FORMAT binary)
        """
}
