import NIOConcurrencyHelpers

/// The in-memory device table: credentials, marks, sessions and the live connection of
/// every device. A connect is checked here and never waits on the database.
///
/// Thread-safe; one lock guards it, held only for dictionary work.
public final class DeviceRegistry: Sendable {
    public enum Authentication: Sendable, Equatable {
        case accepted(DeviceRecord)
        /// Wrong or missing token, or a device unknown while auto-provisioning is off.
        case unauthorized
        case disabled
        /// Unknown, and auto-provisioning is on: register it first.
        case provision
    }

    private struct Entry {
        var record: DeviceRecord
        var connection: (any DeviceConnection)?
    }

    private let entries = NIOLockedValueBox<[String: Entry]>([:])
    private let loaded = NIOLockedValueBox(false)
    private let autoProvision: Bool

    public init(autoProvision: Bool = false) {
        self.autoProvision = autoProvision
    }

    /// Whether the table was loaded from storage at least once; until then no device can
    /// be checked (the database was unreachable at start).
    public var isLoaded: Bool { loaded.withLockedValue { $0 } }

    /// Replaces the whole table, keeping live connections of devices that remain. Marks and
    /// sessions never go back (storage may lag the sessions started in memory).
    public func load(_ records: [DeviceRecord]) {
        defer { loaded.withLockedValue { $0 = true } }
        entries.withLockedValue { entries in
            var fresh: [String: Entry] = [:]
            for var record in records {
                let old = entries[record.id]
                if let known = old?.record, known.key == record.key {
                    record.mark = max(record.mark, known.mark)
                    record.session = max(record.session, known.session)
                }
                fresh[record.id] = Entry(record: record, connection: old?.connection)
            }
            entries = fresh
        }
    }

    /// Adds or updates one device from storage. Marks and sessions never go back.
    /// - Returns: the live connection if the update revokes it (disabled or token changed).
    @discardableResult
    public func upsert(_ record: DeviceRecord) -> (any DeviceConnection)? {
        entries.withLockedValue { entries in
            guard var entry = entries[record.id] else {
                entries[record.id] = Entry(record: record)
                return nil
            }
            let revoked = (!record.enabled && entry.record.enabled) || record.tokenHash != entry.record.tokenHash
            let mark = max(entry.record.mark, record.mark)
            let session = max(entry.record.session, record.session)
            entry.record = record
            entry.record.mark = mark
            entry.record.session = session
            let connection = revoked ? entry.connection : nil
            if revoked { entry.connection = nil }
            entries[record.id] = entry
            return connection
        }
    }

    /// Forgets a device. - Returns: its live connection, to be closed.
    @discardableResult
    public func remove(id: String) -> (any DeviceConnection)? {
        entries.withLockedValue { $0.removeValue(forKey: id)?.connection }
    }

    public func record(id: String) -> DeviceRecord? {
        entries.withLockedValue { $0[id]?.record }
    }

    public var records: [DeviceRecord] {
        entries.withLockedValue { $0.values.map(\.record) }
    }

    /// Every live connection on this node.
    public var connections: [any DeviceConnection] {
        entries.withLockedValue { $0.values.compactMap(\.connection) }
    }

    public func isOnline(id: String) -> Bool {
        entries.withLockedValue { $0[id]?.connection != nil }
    }

    public func authenticate(id: String, token: String?) -> Authentication {
        let record = entries.withLockedValue { $0[id]?.record }
        guard let record else { return autoProvision ? .provision : .unauthorized }
        if let hash = record.tokenHash {
            guard let token, DeviceToken.matches(token, hash: hash) else { return .unauthorized }
        } else if !autoProvision {
            return .unauthorized
        }
        return record.enabled ? .accepted(record) : .disabled
    }

    /// Makes `connection` the device's live one and starts its next session.
    /// - Returns: the new session and the connection it replaces; `nil` if the device is gone.
    public func attach(_ connection: any DeviceConnection, deviceID: String) -> (session: Int64, replaced: (any DeviceConnection)?)? {
        entries.withLockedValue { entries in
            guard var entry = entries[deviceID] else { return nil }
            let replaced = entry.connection
            entry.record.session += 1
            entry.connection = connection
            entries[deviceID] = entry
            return (entry.record.session, replaced)
        }
    }

    /// A claim in the shared database gave the device `session` and `mark` (cluster mode).
    /// Neither goes back.
    public func claimed(id: String, session: Int64, mark: UInt64) {
        entries.withLockedValue { entries in
            guard entries[id] != nil else { return }
            entries[id]!.record.session = max(entries[id]!.record.session, session)
            entries[id]!.record.mark = max(entries[id]!.record.mark, mark)
        }
    }

    /// The device's live connection on this node, with the session the registry gave last.
    public func connection(id: String) -> (connection: any DeviceConnection, session: Int64)? {
        entries.withLockedValue { entries in
            guard let entry = entries[id], let connection = entry.connection else { return nil }
            return (connection, entry.record.session)
        }
    }

    /// Clears the live connection if it is still `connection`. - Returns: whether it was.
    @discardableResult
    public func detach(_ connection: any DeviceConnection, deviceID: String) -> Bool {
        entries.withLockedValue { entries in
            guard entries[deviceID]?.connection === connection else { return false }
            entries[deviceID]?.connection = nil
            return true
        }
    }

    /// Raises committed marks after a write; called by the ingest writer.
    public func raiseMarks(_ marks: [String: UInt64]) {
        guard !marks.isEmpty else { return }
        entries.withLockedValue { entries in
            for (id, mark) in marks where entries[id] != nil {
                entries[id]!.record.mark = max(entries[id]!.record.mark, mark)
            }
        }
    }
}
