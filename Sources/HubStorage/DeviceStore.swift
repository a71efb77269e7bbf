import HubIngest
import HubProtocol
import Postgres

/// Device rows in PostgreSQL: registration, tokens, removal. Every call blocks; use it from
/// a CLI or a database thread, never an event loop.
public struct DeviceStore {
    public enum Failure: Error, CustomStringConvertible {
        case invalidID(String)
        case exists(String)
        case notFound(String)

        public var description: String {
            switch self {
            case .invalidID(let id): "invalid device id \(JSON.quote(id)): use 1-64 of A-Z a-z 0-9 . _ - (not only dots)"
            case .exists(let id): "device \(id) already exists"
            case .notFound(let id): "no device \(id)"
            }
        }
    }

    public struct Listing: Sendable {
        public var id: String
        public var enabled: Bool
        public var lastSeq: UInt64
        public var session: Int64
        public var lastSeenMicros: Int64?
        public var remote: String?
    }

    private let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    static let recordColumns = "key, id, encode(token_hash, 'hex') AS token_hash, enabled, last_seq, session"

    /// Registers a device. - Returns: its token, shown once.
    public func add(id: String, labelsJSON: String = "{}") throws -> String {
        try create(id: id, labelsJSON: labelsJSON).token
    }

    /// Registers a device. - Returns: its record and its token, shown once.
    public func create(id: String, labelsJSON: String = "{}") throws -> (record: DeviceRecord, token: String) {
        try DeviceStore.validate(id)
        let token = DeviceToken.generate()
        let hash = hexString(DeviceToken.hash(token))
        // A deleted row is revived: its mark continues.
        let result = try connection.query(
            """
            INSERT INTO device_registry (id, token_hash, labels) VALUES ($1, decode($2, 'hex'), $3::jsonb)
            ON CONFLICT (id) DO UPDATE SET token_hash = EXCLUDED.token_hash, labels = EXCLUDED.labels,
                enabled = true, deleted = false
                WHERE device_registry.deleted
            RETURNING \(Self.recordColumns)
            """, [id, hash, labelsJSON])
        guard let row = result.rows.first else { throw Failure.exists(id) }
        return (Self.record(row), token)
    }

    /// Registers a device without a token (auto-provisioning). Existing devices are left alone.
    public func provision(id: String) throws -> DeviceRecord {
        try DeviceStore.validate(id)
        try connection.query(
            """
            INSERT INTO device_registry (id) VALUES ($1)
            ON CONFLICT (id) DO UPDATE SET deleted = false, token_hash = NULL, enabled = true
                WHERE device_registry.deleted
            """, [id])
        guard let record = try record(id: id) else { throw Failure.notFound(id) }
        return record
    }

    /// Issues a new token; the old one stops working.
    public func rotateToken(id: String) throws -> String {
        try rotate(id: id).token
    }

    /// Issues a new token. - Returns: the record and the token.
    public func rotate(id: String) throws -> (record: DeviceRecord, token: String) {
        let token = DeviceToken.generate()
        let result = try connection.query(
            "UPDATE device_registry SET token_hash = decode($2, 'hex') WHERE id = $1 AND NOT deleted RETURNING \(Self.recordColumns)",
            [id, hexString(DeviceToken.hash(token))])
        guard let row = result.rows.first else { throw Failure.notFound(id) }
        return (Self.record(row), token)
    }

    /// Removes a device. Without `purge` its data and mark stay; with it, everything goes.
    public func remove(id: String, purge: Bool = false) throws {
        if purge {
            let existed = try connection.transaction { () throws(PostgresError) -> Bool in
                let result = try connection.query("DELETE FROM device_registry WHERE id = $1 RETURNING key, deleted", [id])
                guard let row = result.rows.first, let key = row[0] else { return false }
                try connection.query("DELETE FROM reading WHERE device_key = $1", [key])
                for table in ["rollup_1m", "rollup_1h", "rollup_delta", "device_metric"] {
                    try connection.query("DELETE FROM \(table) WHERE device_key = $1", [key])
                }
                try connection.query("DELETE FROM rejected_frames WHERE device_id = $1", [id])
                try connection.query("DELETE FROM commands WHERE device_id = $1", [id])
                return row[1] == "f"
            }
            guard existed else { throw Failure.notFound(id) }
            return
        }
        let result = try connection.query(
            "UPDATE device_registry SET deleted = true, token_hash = NULL WHERE id = $1 AND NOT deleted RETURNING key", [id])
        guard result.rows.count == 1 else { throw Failure.notFound(id) }
    }

    /// Devices for the REST API, optionally only ids starting with `prefix`.
    public func infos(_ filter: DeviceFilter = DeviceFilter(), id: String? = nil) throws -> [DeviceInfo] {
        // A label is matched by containment (`@>`), given as a one-key JSON object.
        let label = filter.label.map { label -> String in
            var writer = JSONWriter(capacity: 32)
            writer.raw("{")
            writer.string(label.key)
            writer.raw(":")
            writer.string(label.value)
            writer.raw("}")
            return writer.text
        }
        let result = try connection.query(
            """
            SELECT id, labels::text, enabled, last_seq, session,
                   (extract(epoch FROM last_seen) * 1000000)::bigint, remote
            FROM device_registry
            WHERE NOT deleted AND ($1::text IS NULL OR starts_with(id, $1)) AND ($2::text IS NULL OR id = $2)
              AND ($3::jsonb IS NULL OR labels @> $3::jsonb) AND ($4::text IS NULL OR id > $4 COLLATE "C")
            ORDER BY id COLLATE "C"
            LIMIT $5
            """, [filter.prefix, id, label, filter.after, filter.limit.map(String.init)])
        return result.rows.map { row in
            DeviceInfo(
                id: row[0]!, labelsJSON: row[1] ?? "{}", enabled: row[2] == "t", lastSeq: UInt64(row[3]!) ?? 0,
                session: Int64(row[4]!) ?? 0, lastSeenMicros: row[5].flatMap { Int64($0) }, remote: row[6])
        }
    }

    /// Changes `enabled` and/or replaces the labels. - Returns: the record, or `nil` if unknown.
    public func update(id: String, enabled: Bool?, labelsJSON: String?) throws -> DeviceRecord? {
        let result = try connection.query(
            """
            UPDATE device_registry SET enabled = COALESCE($2::boolean, enabled), labels = COALESCE($3::jsonb, labels)
            WHERE id = $1 AND NOT deleted
            RETURNING \(Self.recordColumns)
            """, [id, enabled.map { $0 ? "true" : "false" }, labelsJSON])
        return result.rows.first.map(Self.record)
    }

    public func list() throws -> [Listing] {
        let result = try connection.query(
            """
            SELECT id, enabled, last_seq, session,
                   (extract(epoch FROM last_seen) * 1000000)::bigint AS last_seen_us, remote
            FROM device_registry WHERE NOT deleted ORDER BY id
            """)
        return result.rows.map { row in
            Listing(
                id: row[0]!, enabled: row[1] == "t", lastSeq: UInt64(row[2]!) ?? 0, session: Int64(row[3]!) ?? 0,
                lastSeenMicros: row[4].flatMap { Int64($0) }, remote: row[5])
        }
    }

    /// Every live (not deleted) device, for the hub's in-memory registry.
    /// Fills `catalog` with every metric name and every device's names.
    public func loadMetrics(into catalog: MetricCatalog) throws {
        let names = try connection.query("SELECT name FROM metric").rows.compactMap { $0[0] }
        let pairs = try connection.query(
            "SELECT d.device_key, m.name FROM device_metric d JOIN metric m ON m.key = d.metric_key"
        ).rows.compactMap { row -> (device: Int32, name: String)? in
            guard let key = row[0].flatMap({ Int32($0) }), let name = row[1] else { return nil }
            return (key, name)
        }
        catalog.load(names: names, pairs: pairs)
    }

    public func loadAll() throws -> [DeviceRecord] {
        try connection.query("SELECT \(Self.recordColumns) FROM device_registry WHERE NOT deleted").rows.map(Self.record)
    }

    /// One live device, or `nil` if it is unknown or deleted.
    public func record(id: String) throws -> DeviceRecord? {
        try connection.query(
            "SELECT \(Self.recordColumns) FROM device_registry WHERE id = $1 AND NOT deleted", [id]
        ).rows.first.map(Self.record)
    }

    static func record(_ row: [String?]) -> DeviceRecord {
        DeviceRecord(
            key: Int32(row[0]!)!, id: row[1]!, tokenHash: row[2].map(bytes(hex:)), enabled: row[3] == "t",
            mark: UInt64(row[4]!) ?? 0, session: Int64(row[5]!) ?? 0)
    }

    static func validate(_ id: String) throws {
        guard DeviceID.isValid(id) else { throw Failure.invalidID(id) }
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

func bytes(hex: String) -> [UInt8] {
    let utf8 = Array(hex.utf8)
    func nibble(_ c: UInt8) -> UInt8 { c <= UInt8(ascii: "9") ? c - UInt8(ascii: "0") : (c | 0x20) - UInt8(ascii: "a") + 10 }
    return stride(from: 0, to: utf8.count - 1, by: 2).map { nibble(utf8[$0]) << 4 | nibble(utf8[$0 + 1]) }
}
