/// Why the client closed (or lost) a connection; logged with the disconnect.
enum CloseReason: String, Sendable {
    /// The server or the network closed it.
    case connectionLost = "connection_lost"
    /// `maxPingsOutstanding` `PING`s went unanswered.
    case staleConnection = "stale_connection"
    /// The server broke the protocol or a limit; the parser cannot go on.
    case protocolError = "protocol_error"
    /// The server's `INFO` was not what `ServerInfo` accepts.
    case badInfo = "bad_info"
    /// `INFO` or the handshake's `PONG` did not come within the connect timeout.
    case handshakeTimeout = "handshake_timeout"
    /// `shutdown()` was called.
    case shutdown
}
