/// One operation sent by a NATS server to a client.
public enum ServerOp: Equatable, Sendable {
    /// `INFO`: the server's JSON description of itself, as text. Parsing it is the caller's
    /// job; its `max_payload` should be fed back into `NATSParser.maxPayloadLength`.
    case info(String)
    /// `MSG` or `HMSG`: a message delivered to one of the client's subscriptions.
    case msg(Message)
    /// `PING`: the server checks the client is alive; answer with `PONG`.
    case ping
    /// `PONG`: the answer to the client's `PING`.
    case pong
    /// `+OK`: the server accepted the last operation (verbose mode only).
    case ok
    /// `-ERR`: the server reports an error, with the surrounding single quotes removed.
    case err(String)
}

/// A message delivered by `MSG` or `HMSG`.
public struct Message: Equatable, Sendable {
    /// The subject the message was published to.
    public var subject: String
    /// The subscription id the client chose in `SUB`. The protocol calls it alphanumeric,
    /// so it is kept as text, exactly as the server sent it.
    public var sid: String
    /// The subject to send a reply to, when the publisher asked for one.
    public var replyTo: String?
    /// For `HMSG`, the raw header section as sent: `NATS/1.0`, then `name: value` lines,
    /// ending with the blank line (CRLF CRLF). `nil` for `MSG`.
    public var headers: [UInt8]?
    /// The message body.
    public var payload: [UInt8]

    public init(subject: String, sid: String, replyTo: String? = nil, headers: [UInt8]? = nil, payload: [UInt8]) {
        self.subject = subject
        self.sid = sid
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }
}
