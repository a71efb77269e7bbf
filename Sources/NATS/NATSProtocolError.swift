/// Why the NATS codec refused some bytes, in words safe to log or show.
///
/// The description names the broken rule and, at most, a field name or a number. It never
/// repeats subjects, header values or payload bytes, which may be private.
public struct NATSProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The server sent an operation this codec does not know.
        case unknownOperation = "unknown_operation"
        /// An operation had too few or too many fields.
        case badFieldCount = "bad_field_count"
        /// A byte count was not a plain decimal number that fits in an `Int`.
        case badNumber = "bad_number"
        /// An `HMSG` announced more header bytes than total bytes.
        case badHeaderLength = "bad_header_length"
        /// A control line ended in a bare LF instead of CRLF.
        case badLineEnding = "bad_line_ending"
        /// A control line ran past the maximum length without its CRLF.
        case lineTooLong = "line_too_long"
        /// A message announced more bytes than the maximum payload.
        case payloadTooLarge = "payload_too_large"
        /// The bytes after a payload were not CRLF.
        case missingPayloadTerminator = "missing_payload_terminator"
        /// A subject, sid, reply-to or error text was not UTF-8.
        case notUTF8 = "not_utf8"
        /// The encoder was given a subject or reply-to that would break the line.
        case invalidSubject = "invalid_subject"
        /// The encoder was given a queue group that would break the line.
        case invalidQueueGroup = "invalid_queue_group"
        /// The encoder was given a sid that would break the line.
        case invalidSid = "invalid_sid"
        /// The encoder was given `CONNECT` options containing CR or LF.
        case invalidConnectOptions = "invalid_connect_options"
        /// The encoder was given a header block that is not `NATS/1.0 ... CRLF CRLF`.
        case invalidHeaders = "invalid_headers"
    }

    public let code: Code
    private let detail: String

    init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    /// A short reason, e.g. `payload_too_large: MSG announces 2000000 bytes, limit 1048576`.
    public var description: String { "\(code.rawValue): \(detail)" }
}
