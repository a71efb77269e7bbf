import Foundation
import HubIngest
import HubProtocol
import NIOHTTP1

/// `/api/v1/devices…`: registration, listing, changes, removal and token rotation.
/// Changes reach the in-memory registry at once, and close a live connection with 4003
/// when they revoke it.
struct DeviceRoutes: Sendable {
    let admin: DeviceAdmin
    let registry: DeviceRegistry
    let fanout: LiveFanout

    /// Whether the device is connected: here, or (in a cluster) by its latest presence
    /// from any node.
    func isOnline(_ id: String) -> Bool {
        if registry.isOnline(id: id) { return true }
        guard fanout.isClustered, let key = registry.record(id: id)?.key else { return false }
        return fanout.isOnline(key: key) ?? false
    }

    var routes: [RESTRouter.Route] {
        [
            .init(.POST, "/api/v1/devices", create),
            .init(.GET, "/api/v1/devices", list),
            .init(.GET, "/api/v1/devices/:id", show),
            .init(.PATCH, "/api/v1/devices/:id", update),
            .init(.DELETE, "/api/v1/devices/:id", delete),
            .init(.POST, "/api/v1/devices/:id/token", rotate),
        ]
    }

    @Sendable func create(_ request: RESTRequest) async throws -> HTTPReply {
        let body = try request.jsonObject()
        guard let id = body["id"] as? String else { throw RESTError(.badRequest, "bad_request", "\"id\" is required") }
        guard DeviceID.isValid(id) else { throw Self.invalidID }
        let labels = try Self.labels(body["labels"]) ?? "{}"
        do {
            let (record, token) = try await admin.create(id: id, labelsJSON: labels)
            registry.upsert(record)
            return .json(.created, ["id": id, "token": token])
        } catch DeviceAdminError.exists {
            throw RESTError(.conflict, "exists", "device \(id) already exists")
        }
    }

    /// The largest `limit` of a listing.
    static let maxListLimit = 1_000
    /// Rows read per database round while a limited listing filters by online state.
    static let onlineScanPage = 500

    @Sendable func list(_ request: RESTRequest) async throws -> HTTPReply {
        let query = request.query
        var online: Bool?
        if let raw = query["online"] {
            guard let value = Bool(raw) else { throw RESTError(.badRequest, "bad_request", "online must be true or false") }
            online = value
        }
        var filter = DeviceFilter(prefix: query["prefix"], after: query["after"])
        if let raw = query["limit"] {
            guard let limit = Int(raw), (1...Self.maxListLimit).contains(limit) else {
                throw RESTError(.badRequest, "bad_request", "limit must be between 1 and \(Self.maxListLimit)")
            }
            filter.limit = limit
        }
        if let raw = query["label"] {
            guard let colon = raw.firstIndex(of: ":"), colon != raw.startIndex else {
                throw RESTError(.badRequest, "bad_request", "label must look like key:value")
            }
            filter.label = (String(raw[..<colon]), String(raw[raw.index(after: colon)...]))
        }
        guard let online else { return .json(.ok, try await admin.list(filter).map(json)) }
        // Online is known in memory, not in the database: read matches a page at a time
        // (all of them without a limit) and keep those in the state asked for.
        let limit = filter.limit ?? .max
        filter.limit = filter.limit.map { max($0, Self.onlineScanPage) }
        var found: [DeviceInfo] = []
        while found.count < limit {
            let page = try await admin.list(filter)
            found += page.lazy.filter { isOnline($0.id) == online }.prefix(limit - found.count)
            guard let last = page.last, page.count == filter.limit else { break }
            filter.after = last.id
        }
        return .json(.ok, found.map(json))
    }

    @Sendable func show(_ request: RESTRequest) async throws -> HTTPReply {
        let id = try Self.id(request)
        guard let device = try await admin.info(id: id) else { throw RESTError.notFound("no device \(id)") }
        return .json(.ok, json(device))
    }

    @Sendable func update(_ request: RESTRequest) async throws -> HTTPReply {
        let id = try Self.id(request)
        let body = try request.jsonObject()
        var enabled: Bool?
        if let raw = body["enabled"] {
            guard let value = JSONNumber.boolean(raw) else { throw RESTError(.badRequest, "bad_request", "\"enabled\" must be true or false") }
            enabled = value
        }
        let labels = try Self.labels(body["labels"])
        guard let record = try await admin.update(id: id, enabled: enabled, labelsJSON: labels) else {
            throw RESTError.notFound("no device \(id)")
        }
        registry.upsert(record)?.close(.revoked)
        guard let device = try await admin.info(id: id) else { throw RESTError.notFound("no device \(id)") }
        return .json(.ok, json(device))
    }

    @Sendable func delete(_ request: RESTRequest) async throws -> HTTPReply {
        let id = try Self.id(request)
        var purge = false
        if let raw = request.query["purge"] {
            guard let value = Bool(raw) else { throw RESTError(.badRequest, "bad_request", "purge must be true or false") }
            purge = value
        }
        guard try await admin.delete(id: id, purge: purge) else { throw RESTError.notFound("no device \(id)") }
        registry.remove(id: id)?.close(.revoked)
        return .noContent
    }

    @Sendable func rotate(_ request: RESTRequest) async throws -> HTTPReply {
        let id = try Self.id(request)
        guard let (record, token) = try await admin.rotateToken(id: id) else { throw RESTError.notFound("no device \(id)") }
        registry.upsert(record)?.close(.revoked)
        return .json(.ok, ["token": token])
    }

    /// The contract's device object.
    private func json(_ device: DeviceInfo) -> [String: Any] {
        [
            "id": device.id,
            "labels": (try? JSONSerialization.jsonObject(with: Data(device.labelsJSON.utf8))) ?? [String: Any](),
            "enabled": device.enabled,
            "online": isOnline(device.id),
            "session": device.session,
            "last_seq": device.lastSeq,
            "last_seen_us": device.lastSeenMicros.map { $0 as Any } ?? NSNull(),
            "remote": device.remote.map { $0 as Any } ?? NSNull(),
        ]
    }

    static let invalidID = RESTError(.badRequest, "bad_request", "invalid device id: use 1-64 characters of A-Z a-z 0-9 . _ - (not only dots)")

    static func id(_ request: RESTRequest) throws(RESTError) -> String {
        let id = request.parameters["id"] ?? ""
        guard DeviceID.isValid(id) else { throw invalidID }
        return id
    }

    /// Labels must be a JSON object of strings. - Returns: its JSON text, or `nil` if absent.
    static func labels(_ value: Any?) throws(RESTError) -> String? {
        guard let value else { return nil }
        guard let object = value as? [String: Any], object.values.allSatisfy({ $0 is String }),
            let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        else { throw RESTError(.badRequest, "bad_request", "\"labels\" must be an object of strings") }
        return String(decoding: data, as: UTF8.self)
    }
}
