import Foundation
import HubIngest
import HubProtocol
import NIOHTTP1

/// `/api/v1/devices/{id}/telemetry` (raw or bucketed) and `/api/v1/devices/{id}/latest`.
struct TelemetryRoutes: Sendable {
    /// Rows per answer unless `limit` says otherwise…
    static let defaultLimit = 1_000
    /// …and at most this many.
    static let maxLimit = 10_000
    /// The widest bucket: the whole span of reading times (10,000 years), so one bucket
    /// can hold every reading, and bucket arithmetic in microseconds stays within 64 bits.
    static let maxBucketSeconds: Int64 = FrameLimits.endOfTimeMicros / 1_000_000

    let queries: TelemetryQueries
    let registry: DeviceRegistry

    var routes: [RESTRouter.Route] {
        [
            .init(.GET, "/api/v1/devices/:id/telemetry", telemetry),
            .init(.GET, "/api/v1/devices/:id/latest", latest),
        ]
    }

    @Sendable func telemetry(_ request: RESTRequest) async throws -> HTTPReply {
        let key = try deviceKey(request)
        let query = request.query
        // Any 64-bit time is taken; reading times lie in [0, end of year 9999), so the range
        // is clamped to that, which changes no answer and keeps the database's time
        // arithmetic in range.
        let from = try Self.integer(query, "from_us").map { $0 <= 0 ? nil : min($0, FrameLimits.endOfTimeMicros) } ?? nil
        let to = try Self.integer(query, "to_us").map { min(max($0, 0), FrameLimits.endOfTimeMicros) }
        if let from, let to, from > to { throw RESTError(.badRequest, "bad_request", "from_us is after to_us") }
        let limit = try Self.integer(query, "limit").map(Int.init) ?? Self.defaultLimit
        guard (1...Self.maxLimit).contains(limit) else {
            throw RESTError(.badRequest, "bad_request", "limit must be between 1 and \(Self.maxLimit)")
        }
        let metric = query["metric"].flatMap { $0.isEmpty ? nil : $0 }
        let bucket = try Self.integer(query, "bucket_s")
        if bucket == nil, query["agg"] != nil { throw RESTError(.badRequest, "bad_request", "agg needs bucket_s") }
        guard let bucket else {
            let rows = try await queries.raw(deviceKey: key, metric: metric, fromMicros: from, toMicros: to, limit: limit)
            return HTTPReply(status: .ok, body: Self.json(rows, withSeq: true))
        }
        guard (1...Self.maxBucketSeconds).contains(bucket) else {
            throw RESTError(.badRequest, "bad_request", "bucket_s must be a whole number of seconds from 1 to \(Self.maxBucketSeconds)")
        }
        let name = query["agg"] ?? "avg"
        guard let aggregate = Aggregate(rawValue: name) else {
            throw RESTError(.badRequest, "bad_request", "agg must be one of \(Aggregate.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let rows = try await queries.buckets(
            deviceKey: key, metric: metric, fromMicros: from, toMicros: to, bucketSeconds: bucket, aggregate: aggregate, limit: limit)
        return HTTPReply(status: .ok, body: Self.json(rows, withSeq: false))
    }

    @Sendable func latest(_ request: RESTRequest) async throws -> HTTPReply {
        let rows = try await queries.latest(deviceKey: try deviceKey(request))
        var answer: [String: Any] = [:]
        for row in rows { answer[row.metric] = ["ts_us": row.tsMicros, "value": Self.json(row.value)] }
        return .json(.ok, answer)
    }

    private func deviceKey(_ request: RESTRequest) throws -> Int32 {
        let id = try DeviceRoutes.id(request)
        guard let record = registry.record(id: id) else { throw RESTError.notFound("no device \(id)") }
        return record.key
    }

    /// An optional integer query parameter; 400 naming it when it is not one.
    static func integer(_ query: [String: String], _ name: String) throws(RESTError) -> Int64? {
        guard let raw = query[name] else { return nil }
        guard let value = Int64(raw) else { throw RESTError(.badRequest, "bad_request", "\(name) must be an integer") }
        return value
    }

    /// Rows as a JSON array, with the one JSON writer (`JSONSerialization` took about 30 µs
    /// a row, appending to a `String` about 1 µs): `[{"metric":…,"seq":…,"ts_us":…,"value":…},…]`.
    static func json(_ rows: [TelemetryRow], withSeq: Bool) -> String {
        var writer = JSONWriter(capacity: rows.count * 64 + 2)
        writer.raw("[")
        for (index, row) in rows.enumerated() {
            writer.raw(index == 0 ? #"{"metric":"# : #",{"metric":"#)
            writer.string(row.metric)
            if withSeq {
                writer.raw(#","seq":"#)
                writer.unsigned(row.seq ?? 0)
            }
            writer.raw(#","ts_us":"#)
            writer.integer(row.tsMicros)
            writer.raw(#","value":"#)
            switch row.value {
            case .f64(let double)?: writer.number(double)
            case .i64(let int)?: writer.integer(int)
            case .bool(let bool)?: writer.integer(bool ? 1 : 0)
            case .string(let string)?: writer.string(string)
            case nil: writer.null()
            }
            writer.raw("}")
        }
        writer.raw("]")
        return writer.text
    }

    static func json(_ value: Value?) -> Any {
        switch value {
        case .f64(let double)?: double
        case .i64(let int)?: int
        case .bool(let bool)?: bool ? 1 : 0
        case .string(let string)?: string
        case nil: NSNull()
        }
    }
}
