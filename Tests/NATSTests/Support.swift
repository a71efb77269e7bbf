import NATS

/// The UTF-8 bytes of `text`.
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Feeds the chunks in order, draining the parser after each one, and returns every op.
func parse(_ chunks: [[UInt8]], parser: NATSParser = NATSParser()) throws(NATSProtocolError) -> [ServerOp] {
    var parser = parser
    var ops: [ServerOp] = []
    for chunk in chunks {
        parser.append(chunk)
        while let op = try parser.next() { ops.append(op) }
    }
    return ops
}

/// Parses `stream` given all at once.
func parse(_ stream: String, parser: NATSParser = NATSParser()) throws(NATSProtocolError) -> [ServerOp] {
    try parse([bytes(stream)], parser: parser)
}

/// The error the parser throws for `stream`, checked to be the same whether the bytes come
/// all at once or one at a time; `nil` when there is none.
func parseError(_ stream: [UInt8], parser: NATSParser = NATSParser()) -> NATSProtocolError? {
    func error(_ chunks: [[UInt8]]) -> NATSProtocolError? {
        do throws(NATSProtocolError) {
            _ = try parse(chunks, parser: parser)
            return nil
        } catch {
            return error
        }
    }
    let whole = error([stream])
    let dripped = error(stream.map { [$0] })
    return whole == dripped ? whole : nil
}

func parseError(_ stream: String, parser: NATSParser = NATSParser()) -> NATSProtocolError? {
    parseError(bytes(stream), parser: parser)
}

/// A `MSG` or `HMSG` op, with text payload and headers.
func msg(_ subject: String, _ sid: String, replyTo: String? = nil, headers: String? = nil, _ payload: String) -> ServerOp {
    .msg(Message(subject: subject, sid: sid, replyTo: replyTo, headers: headers.map(bytes), payload: bytes(payload)))
}
