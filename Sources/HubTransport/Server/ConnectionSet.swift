import NIOConcurrencyHelpers

/// The live connections of one kind, so shutdown can reach each of them.
final class ConnectionSet<Connection: AnyObject & Sendable>: Sendable {
    private let members = NIOLockedValueBox<[ObjectIdentifier: Connection]>([:])

    func insert(_ connection: Connection) {
        members.withLockedValue { $0[ObjectIdentifier(connection)] = connection }
    }

    func remove(_ connection: Connection) {
        _ = members.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    var all: [Connection] { members.withLockedValue { Array($0.values) } }
    var count: Int { members.withLockedValue { $0.count } }
}
