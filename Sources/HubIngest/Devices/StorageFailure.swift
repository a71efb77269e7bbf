/// Why the database did not do what a request asked, in terms a client can act on. The
/// storage layer turns its driver's errors into these; "the database is not reachable"
/// is said only when it is true.
public enum StorageFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection is lost or the server is starting, stopping or out of resources.
    case unreachable
    /// The statement ran past its time limit (`--statement-timeout`).
    case timeout
    /// Too many requests wait for a database connection.
    case busy
    /// The database refused the value itself (out of range, not storable): the caller's
    /// input, not the database, is at fault.
    case refused(String)
    /// Anything else the database reported.
    case failed(String)

    public var description: String {
        switch self {
        case .unreachable: "the database is not reachable"
        case .timeout: "the database did not answer within the statement time limit"
        case .busy: "too many requests wait for the database"
        case .refused(let why): "the database refused the value: \(why)"
        case .failed(let why): "the database failed: \(why)"
        }
    }
}
