/// Why a request (or a `flush`) did not get its answer, in words safe to log or show.
///
/// Compare with the static values, e.g. `error as? NATSRequestError == .timedOut`. The
/// description never repeats subjects or payload bytes.
public struct NATSRequestError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// No answer came within the timeout.
        case timedOut = "timed_out"
        /// The connection was not up when the request was made.
        case notConnected = "not_connected"
        /// The server answered that no subscriber listens on the subject.
        case noResponders = "no_responders"
        /// Too many requests (or flushes) were already waiting for their answer.
        case tooManyPending = "too_many_pending"
        /// The connection was shut down before the answer came.
        case shutDown = "shut_down"
        /// The request was dropped before it was sent: an invalid subject, a payload over
        /// the server's `max_payload`, or a full pending buffer.
        case notSent = "not_sent"
    }

    public let code: Code

    public init(_ code: Code) { self.code = code }

    public static let timedOut = NATSRequestError(.timedOut)
    public static let notConnected = NATSRequestError(.notConnected)
    public static let noResponders = NATSRequestError(.noResponders)
    public static let tooManyPending = NATSRequestError(.tooManyPending)
    public static let shutDown = NATSRequestError(.shutDown)
    public static let notSent = NATSRequestError(.notSent)

    public var description: String {
        switch code {
        case .timedOut: "timed_out: no answer within the timeout"
        case .notConnected: "not_connected: the connection to the NATS server is not up"
        case .noResponders: "no_responders: nobody subscribes to the subject"
        case .tooManyPending: "too_many_pending: too many requests are waiting for answers"
        case .shutDown: "shut_down: the connection was shut down"
        case .notSent: "not_sent: the request was dropped before it was sent"
        }
    }
}
