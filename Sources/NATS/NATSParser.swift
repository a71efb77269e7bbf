/// An incremental parser for the operations a NATS server sends to a client.
///
/// It does no I/O: the caller appends bytes as they arrive and calls `next()` until it
/// returns `nil`, which means the next operation is not complete yet. Bytes can arrive in
/// any split, one at a time or many operations at once; the operations come out the same.
///
/// Memory bound: once `next()` has returned `nil`, the parser holds only the operation it is
/// waiting to finish, at most `maxControlLineLength + 1` bytes of control line or
/// `maxPayloadLength + 2` bytes of message body, plus what the caller appended since. An
/// announced body over `maxPayloadLength` is refused before any of it is buffered.
///
/// After an error every later call to `next()` throws the same error: the connection is
/// out of step with the server and should be closed.
public struct NATSParser: Sendable {
    /// The default for `maxControlLineLength`.
    public static let defaultMaxControlLineLength = 4_096
    /// The default for `maxPayloadLength`, the NATS server's own default `max_payload`.
    public static let defaultMaxPayloadLength = 1_048_576

    /// The longest control line accepted, not counting its CRLF.
    public let maxControlLineLength: Int
    /// The largest message body accepted, headers and payload together. Set it from the
    /// `max_payload` the server announces in `INFO`; a server that sends a bigger message
    /// than it announced is broken or hostile.
    public var maxPayloadLength: Int

    /// What the parser is waiting for.
    private enum State: Sendable {
        /// A control line; `scanned` bytes of it have already been searched for LF.
        case controlLine(scanned: Int)
        /// The body of a `MSG` or `HMSG` whose control line has been read.
        case body(PendingMessage)
        /// Nothing: the stream broke a rule.
        case failed(NATSProtocolError)
    }

    private var state = State.controlLine(scanned: 0)
    /// Bytes received and not yet handed out; everything before `readIndex` is consumed.
    private var buffer: [UInt8] = []
    private var readIndex = 0

    /// Emptied buffers larger than this give their memory back rather than keep it.
    private static let retainedCapacity = 65_536

    public init(
        maxControlLineLength: Int = NATSParser.defaultMaxControlLineLength,
        maxPayloadLength: Int = NATSParser.defaultMaxPayloadLength
    ) {
        self.maxControlLineLength = maxControlLineLength
        self.maxPayloadLength = maxPayloadLength
    }

    /// Adds bytes received from the server. Call `next()` until it returns `nil` afterwards.
    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// The bytes the parser holds. Bytes already handed out as operations are dropped each
    /// time `next()` returns `nil`, so then this is only the unfinished operation.
    public var bufferedByteCount: Int { buffer.count }

    /// The next complete operation, or `nil` when more bytes are needed.
    ///
    /// - Throws: `NATSProtocolError` when the bytes break the protocol or a limit. The
    ///   parser stays failed afterwards.
    public mutating func next() throws(NATSProtocolError) -> ServerOp? {
        do throws(NATSProtocolError) {
            while true {
                switch state {
                case .failed(let error):
                    throw error
                case .controlLine(let scanned):
                    guard let line = try takeLine(scanned: scanned) else {
                        compact()
                        return nil
                    }
                    state = .controlLine(scanned: 0)
                    switch try ControlLine.parse(line, maxPayloadLength: maxPayloadLength) {
                    case .op(let op):
                        return op
                    case .message(let pending):
                        state = .body(pending)
                    }
                case .body(let pending):
                    guard let message = try takeBody(pending) else {
                        compact()
                        return nil
                    }
                    state = .controlLine(scanned: 0)
                    return .msg(message)
                }
            }
        } catch {
            state = .failed(error)
            buffer = []
            readIndex = 0
            throw error
        }
    }

    /// Consumes one control line and returns it without its CRLF, or returns `nil` when its
    /// LF has not arrived yet. Only the first `maxControlLineLength + 2` bytes are searched.
    private mutating func takeLine(scanned: Int) throws(NATSProtocolError) -> ArraySlice<UInt8>? {
        let start = readIndex
        let end = buffer.count
        let windowEnd = min(end, start + maxControlLineLength + 2)
        var index = start + scanned
        while index < windowEnd, buffer[index] != ASCII.lf {
            index += 1
        }
        guard index < windowEnd else {
            state = .controlLine(scanned: windowEnd - start)
            // A CR at the very end may be the start of the line's CRLF.
            let length = end - start - (end > start && buffer[end - 1] == ASCII.cr ? 1 : 0)
            guard length <= maxControlLineLength else {
                throw NATSProtocolError(
                    .lineTooLong, "control line longer than \(maxControlLineLength) bytes without CRLF")
            }
            return nil
        }
        guard index > start, buffer[index - 1] == ASCII.cr else {
            throw NATSProtocolError(.badLineEnding, "control line ends in LF without CR")
        }
        readIndex = index + 1
        return buffer[start..<index - 1]
    }

    /// Consumes a message body and its CRLF, or returns `nil` when it has not all arrived.
    private mutating func takeBody(_ pending: PendingMessage) throws(NATSProtocolError) -> Message? {
        guard buffer.count - readIndex >= pending.totalLength + 2 else { return nil }
        let start = readIndex
        let end = start + pending.totalLength
        guard buffer[end] == ASCII.cr, buffer[end + 1] == ASCII.lf else {
            throw NATSProtocolError(
                .missingPayloadTerminator, "no CRLF after the \(pending.totalLength) announced bytes")
        }
        let payloadStart = start + (pending.headerLength ?? 0)
        readIndex = end + 2
        return Message(
            subject: pending.subject,
            sid: pending.sid,
            replyTo: pending.replyTo,
            headers: pending.headerLength.map { _ in Array(buffer[start..<payloadStart]) },
            payload: Array(buffer[payloadStart..<end]))
    }

    /// Drops the consumed bytes, so the buffer holds only the unfinished operation.
    private mutating func compact() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= Self.retainedCapacity)
        } else if readIndex > 0 {
            buffer.removeSubrange(0..<readIndex)
        }
        readIndex = 0
    }
}
