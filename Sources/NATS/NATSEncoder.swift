/// Encodes the operations a NATS client sends to a server.
///
/// Every field is checked before anything is written: a subject with a space in it would
/// shift the fields after it, and a CR or LF would end the line early and let the rest be
/// read as another operation. Such input is refused with an error instead.
public enum NATSEncoder {
    /// `PING\r\n`: asks the server to answer with `PONG`.
    public static let ping: [UInt8] = Array("PING\r\n".utf8)
    /// `PONG\r\n`: the answer to a server's `PING`.
    public static let pong: [UInt8] = Array("PONG\r\n".utf8)

    /// `CONNECT <json>\r\n`. The caller builds the JSON options object.
    ///
    /// - Throws: `invalidConnectOptions` when the text is empty or holds CR or LF.
    public static func connect(json: String) throws(NATSProtocolError) -> [UInt8] {
        guard !json.isEmpty, !json.utf8.contains(where: { $0 == ASCII.cr || $0 == ASCII.lf }) else {
            throw NATSProtocolError(.invalidConnectOptions, "CONNECT options must be one non-empty line")
        }
        var line = Array("CONNECT ".utf8)
        line.append(contentsOf: json.utf8)
        line.append(contentsOf: ASCII.crlf)
        return line
    }

    /// `PUB <subject> [reply-to] <#bytes>\r\n<payload>\r\n`.
    ///
    /// The size is not checked against the server's `max_payload`; the caller knows it.
    public static func publish(
        subject: String, replyTo: String? = nil, payload: some Collection<UInt8>
    ) throws(NATSProtocolError) -> [UInt8] {
        var fields = try [field(subject, .invalidSubject, "subject")]
        if let replyTo { fields.append(try field(replyTo, .invalidSubject, "reply-to")) }
        fields.append(String(payload.count))
        return line("PUB", fields, body: payload.count) { $0.append(contentsOf: payload) }
    }

    /// `HPUB <subject> [reply-to] <#header bytes> <#total bytes>\r\n<headers><payload>\r\n`.
    ///
    /// - Parameter headers: the whole header section, from `NATS/1.0` to the blank line
    ///   that ends it (CRLF CRLF), as `Message.headers` holds it.
    public static func publish(
        subject: String, replyTo: String? = nil, headers: [UInt8], payload: some Collection<UInt8>
    ) throws(NATSProtocolError) -> [UInt8] {
        guard headers.count >= 12, headers.starts(with: "NATS/1.0".utf8),
              headers.suffix(4).elementsEqual([ASCII.cr, ASCII.lf, ASCII.cr, ASCII.lf])
        else {
            throw NATSProtocolError(.invalidHeaders, "headers must start with NATS/1.0 and end with CRLF CRLF")
        }
        var fields = try [field(subject, .invalidSubject, "subject")]
        if let replyTo { fields.append(try field(replyTo, .invalidSubject, "reply-to")) }
        let total = headers.count + payload.count
        fields.append(String(headers.count))
        fields.append(String(total))
        return line("HPUB", fields, body: total) {
            $0.append(contentsOf: headers)
            $0.append(contentsOf: payload)
        }
    }

    /// `SUB <subject> [queue group] <sid>\r\n`.
    public static func subscribe(
        subject: String, queueGroup: String? = nil, sid: String
    ) throws(NATSProtocolError) -> [UInt8] {
        var fields = try [field(subject, .invalidSubject, "subject")]
        if let queueGroup { fields.append(try field(queueGroup, .invalidQueueGroup, "queue group")) }
        fields.append(try field(sid, .invalidSid, "sid"))
        return line("SUB", fields)
    }

    /// `UNSUB <sid> [max_msgs]\r\n`: unsubscribes now, or after `maxMessages` more messages.
    public static func unsubscribe(sid: String, maxMessages: UInt64? = nil) throws(NATSProtocolError) -> [UInt8] {
        var fields = try [field(sid, .invalidSid, "sid")]
        if let maxMessages { fields.append(String(maxMessages)) }
        return line("UNSUB", fields)
    }

    /// Returns `value` when it is one non-empty field: no space, tab, CR or LF.
    private static func field(
        _ value: String, _ code: NATSProtocolError.Code, _ what: String
    ) throws(NATSProtocolError) -> String {
        guard !value.isEmpty else { throw NATSProtocolError(code, "\(what) is empty") }
        guard !value.utf8.contains(where: ASCII.breaksField) else {
            throw NATSProtocolError(code, "\(what) contains a space, tab, CR or LF")
        }
        return value
    }

    /// The op name and fields separated by single spaces, CRLF, then for a message its body
    /// (written by `writeBody`) and another CRLF.
    private static func line(
        _ name: String, _ fields: [String], body: Int? = nil, writeBody: (inout [UInt8]) -> Void = { _ in }
    ) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(name.utf8.count + fields.reduce(0) { $0 + 1 + $1.utf8.count } + 2 + (body.map { $0 + 2 } ?? 0))
        bytes.append(contentsOf: name.utf8)
        for field in fields {
            bytes.append(ASCII.space)
            bytes.append(contentsOf: field.utf8)
        }
        bytes.append(contentsOf: ASCII.crlf)
        if body != nil {
            writeBody(&bytes)
            bytes.append(contentsOf: ASCII.crlf)
        }
        return bytes
    }
}
