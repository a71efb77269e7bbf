/// The fields of a `MSG` or `HMSG` control line, kept while its body arrives.
struct PendingMessage: Sendable {
    var subject: String
    var sid: String
    var replyTo: String?
    /// `nil` for `MSG`; for `HMSG`, how many of the body's bytes are headers.
    var headerLength: Int?
    /// Headers and payload together, not counting the CRLF after them.
    var totalLength: Int
}

/// Reads one server control line, given without its CRLF.
enum ControlLine {
    enum Parsed {
        /// An operation with no body: it is complete.
        case op(ServerOp)
        /// A message whose body follows the line.
        case message(PendingMessage)
    }

    /// The operations a server may send. Names are matched without regard to case.
    private enum Name: String, CaseIterable {
        case info = "info", msg = "msg", hmsg = "hmsg", ping = "ping", pong = "pong"
        case ok = "+ok", err = "-err"

        /// The operation `bytes` names, in any case.
        init?(matching bytes: ArraySlice<UInt8>) {
            let match = Self.allCases.first { name in
                name.rawValue.utf8.count == bytes.count
                    && zip(name.rawValue.utf8, bytes).allSatisfy { $0 == ASCII.lowercased($1) }
            }
            guard let match else { return nil }
            self = match
        }
    }

    static func parse(_ line: ArraySlice<UInt8>, maxPayloadLength: Int) throws(NATSProtocolError) -> Parsed {
        let nameEnd = line.firstIndex(where: ASCII.isDelimiter) ?? line.endIndex
        guard let name = Name(matching: line[..<nameEnd]) else {
            throw NATSProtocolError(.unknownOperation, "unknown operation of \(nameEnd - line.startIndex) bytes")
        }
        let rest = trimmed(line[nameEnd...])
        switch name {
        case .ping, .pong, .ok:
            guard rest.isEmpty else { throw fieldCount(name, expected: "no fields") }
            return .op(name == .ping ? .ping : name == .pong ? .pong : .ok)
        case .info:
            guard !rest.isEmpty else { throw fieldCount(name, expected: "a JSON object") }
            return .op(.info(try text(rest, "INFO JSON")))
        case .err:
            var quoted = rest
            if quoted.count >= 2, quoted.first == UInt8(ascii: "'"), quoted.last == UInt8(ascii: "'") {
                quoted = quoted.dropFirst().dropLast()
            }
            return .op(.err(try text(quoted, "-ERR message")))
        case .msg, .hmsg:
            return .message(try pendingMessage(rest, hasHeaders: name == .hmsg, maxPayloadLength: maxPayloadLength))
        }
    }

    /// `MSG <subject> <sid> [reply-to] <#bytes>` or
    /// `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>`, after the name.
    private static func pendingMessage(
        _ rest: ArraySlice<UInt8>, hasHeaders: Bool, maxPayloadLength: Int
    ) throws(NATSProtocolError) -> PendingMessage {
        let op = hasHeaders ? "HMSG" : "MSG"
        let fields = rest.split(whereSeparator: ASCII.isDelimiter)
        let counts = hasHeaders ? 4...5 : 3...4
        guard counts.contains(fields.count) else {
            throw NATSProtocolError(
                .badFieldCount, "\(op) takes \(counts.lowerBound) or \(counts.upperBound) fields, got \(fields.count)")
        }
        guard let total = ASCII.decimal(fields[fields.count - 1]) else {
            throw NATSProtocolError(.badNumber, "\(op) \(hasHeaders ? "#total bytes" : "#bytes") is not a number")
        }
        guard total <= maxPayloadLength else {
            throw NATSProtocolError(.payloadTooLarge, "\(op) announces \(total) bytes, limit \(maxPayloadLength)")
        }
        var headerLength: Int?
        if hasHeaders {
            guard let length = ASCII.decimal(fields[fields.count - 2]) else {
                throw NATSProtocolError(.badNumber, "HMSG #header bytes is not a number")
            }
            guard length <= total else {
                throw NATSProtocolError(.badHeaderLength, "HMSG announces \(length) header bytes of \(total)")
            }
            headerLength = length
        }
        let hasReply = fields.count == counts.upperBound
        return PendingMessage(
            subject: try text(fields[0], "\(op) subject"),
            sid: try text(fields[1], "\(op) sid"),
            replyTo: try hasReply ? text(fields[2], "\(op) reply-to") : nil,
            headerLength: headerLength,
            totalLength: total)
    }

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        guard let first = bytes.firstIndex(where: { !ASCII.isDelimiter($0) }),
              let last = bytes.lastIndex(where: { !ASCII.isDelimiter($0) })
        else { return bytes[bytes.endIndex...] }
        return bytes[first...last]
    }

    private static func text(_ bytes: ArraySlice<UInt8>, _ what: String) throws(NATSProtocolError) -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw NATSProtocolError(.notUTF8, "\(what) is not UTF-8")
        }
        return string
    }

    private static func fieldCount(_ name: Name, expected: String) -> NATSProtocolError {
        NATSProtocolError(.badFieldCount, "\(name.rawValue.uppercased()) takes \(expected)")
    }
}
