/// A libpq failure. The description carries the SQLSTATE and the server's primary message,
/// never query parameters or COPY data, so it is safe to log and to show.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Connecting failed, or the connection was lost.
        case connection
        /// The server refused a statement.
        case query
        /// Sending COPY data failed.
        case copy
    }

    public let kind: Kind
    /// The five-character SQLSTATE, when the server sent one.
    public let sqlState: String?
    public let message: String

    public init(_ kind: Kind, sqlState: String? = nil, message: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
    }

    /// Whether retrying on a fresh connection may succeed: a lost connection, or a server
    /// that is starting, stopping or out of resources (SQLSTATE classes 08, 53, 57).
    public var isTransient: Bool {
        if kind != .query { return true }
        guard let sqlState else { return false }
        return ["08", "53", "57", "40"].contains(String(sqlState.prefix(2)))
    }

    public var description: String {
        if let sqlState { return "PostgreSQL \(kind.rawValue) error \(sqlState): \(message)" }
        return "PostgreSQL \(kind.rawValue) error: \(message)"
    }
}
