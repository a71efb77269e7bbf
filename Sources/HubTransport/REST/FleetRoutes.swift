import Foundation
import HubIngest
import NIOHTTP1

/// `/api/v1/summary` (the fleet at a glance) and `/api/v1/devices/{id}/rejected` (a
/// device's dead letters).
struct FleetRoutes: Sendable {
    /// Rejected frames per answer unless `limit` says otherwise, and at most.
    static let defaultRejectedLimit = 100
    static let maxRejectedLimit = 1_000

    let queries: FleetQueries
    let registry: DeviceRegistry
    let clock: any HubClock
    /// Whether a device is connected, here or (in a cluster) on another node.
    let isOnline: @Sendable (String) -> Bool
    /// Rows committed per second, lately (`IngestWriter.readingsPerSecond`).
    let readingsPerSecond: @Sendable () -> Double

    var routes: [RESTRouter.Route] {
        [
            .init(.GET, "/api/v1/summary", summary),
            .init(.GET, "/api/v1/devices/:id/rejected", rejected),
        ]
    }

    @Sendable func summary(_ request: RESTRequest) async throws -> HTTPReply {
        let now = clock.wallMicros()
        let counts = try await queries.counts(rejectedSinceMicros: now - 3_600_000_000)
        let records = registry.records
        return .json(.ok, [
            "devices": records.count,
            "devices_online": records.reduce(0) { $0 + (isOnline($1.id) ? 1 : 0) },
            "readings_per_s": (readingsPerSecond() * 10).rounded() / 10,
            "rejected_last_hour": counts.rejectedByReason.values.reduce(0, +),
            "rejected_by_reason": counts.rejectedByReason,
            "commands_pending": counts.commandsPending,
            "server_time_us": now,
        ])
    }

    @Sendable func rejected(_ request: RESTRequest) async throws -> HTTPReply {
        let id = try DeviceRoutes.id(request)
        guard registry.record(id: id) != nil else { throw RESTError.notFound("no device \(id)") }
        var limit = Self.defaultRejectedLimit
        if let raw = request.query["limit"] {
            guard let value = Int(raw), (1...Self.maxRejectedLimit).contains(value) else {
                throw RESTError(.badRequest, "bad_request", "limit must be between 1 and \(Self.maxRejectedLimit)")
            }
            limit = value
        }
        let rows = try await queries.rejected(deviceID: id, limit: limit)
        return .json(.ok, rows.map { row -> [String: Any] in
            ["received_us": row.receivedMicros, "reason": row.reason, "seq": row.seq.map { $0 as Any } ?? NSNull(), "bytes": row.bytes]
        })
    }
}
