import NATS
import Testing

@Suite("NATS parser: limits")
struct ParserLimitTests {
    /// Feeds `stream` one byte at a time; returns how many bytes went in before the error.
    func bytesBeforeError(_ stream: [UInt8], parser: NATSParser = NATSParser()) -> (Int, NATSProtocolError?) {
        var parser = parser
        for (index, byte) in stream.enumerated() {
            parser.append(CollectionOfOne(byte))
            do throws(NATSProtocolError) {
                while try parser.next() != nil {}
            } catch {
                #expect(parser.bufferedByteCount == 0)
                return (index + 1, error)
            }
        }
        return (stream.count, nil)
    }

    @Test("the defaults are a 4,096-byte control line and a 1,048,576-byte payload")
    func defaults() {
        let parser = NATSParser()
        #expect(parser.maxControlLineLength == 4_096)
        #expect(parser.maxPayloadLength == 1_048_576)
    }

    @Test("a 5 KB control line without CRLF is refused as its 4,097th byte arrives")
    func longLineIsRefusedAtTheLimit() {
        let line = bytes("INFO {\"a\":\"" + String(repeating: "x", count: 5_120))
        let (fed, error) = bytesBeforeError(line)
        #expect(fed == 4_097)
        #expect(error?.code == .lineTooLong)
        #expect(error?.description == "line_too_long: control line longer than 4096 bytes without CRLF")
        #expect(parseError(line)?.code == .lineTooLong)
    }

    @Test("a line of exactly the limit is read, whether its CR waits for its LF or not")
    func lineAtTheLimitIsRead() throws {
        let message = String(repeating: "e", count: 4_096 - "-ERR ''".count)
        let line = "-ERR '\(message)'"
        #expect(line.utf8.count == 4_096)
        #expect(try parse(bytes(line + "\r\n").map { [$0] }) == [.err(message)])
        #expect(try parse(line + "\r\n") == [.err(message)])
        #expect(parseError(line + "x\r\n")?.code == .lineTooLong)
    }

    @Test("a smaller control-line limit is kept")
    func customLineLimit() throws {
        let parser = NATSParser(maxControlLineLength: 16)
        #expect(try parse("MSG FOO.BAR 9 11\r\nHello World\r\n", parser: parser) == [msg("FOO.BAR", "9", "Hello World")])
        #expect(parseError("MSG FOO.BAR 90 11\r\nHello World\r\n", parser: parser)?.code == .lineTooLong)
    }

    @Test("a MSG announcing more than the limit is refused as soon as its control line ends")
    func announcedPayloadOverTheLimit() {
        let header = bytes("MSG FOO 9 1048577\r\n")
        let (fed, error) = bytesBeforeError(header + Array(repeating: 0x61, count: 64))
        #expect(fed == header.count)
        #expect(error?.description == "payload_too_large: MSG announces 1048577 bytes, limit 1048576")
    }

    @Test("an HMSG is limited by its total, headers and payload together")
    func hmsgTotalIsLimited() {
        var parser = NATSParser()
        parser.maxPayloadLength = 44
        #expect(parseError("HMSG FOO.BAR 9 34 45\r\n", parser: parser)?.description
            == "payload_too_large: HMSG announces 45 bytes, limit 44")
        parser.maxPayloadLength = 45
        #expect(parseError("HMSG FOO.BAR 9 34 45\r\n\(Golden.foodHeaders)Hello World\r\n", parser: parser) == nil)
    }

    @Test("the payload limit can be changed between ops, as INFO announces max_payload")
    func limitChangesAfterInfo() throws {
        var parser = NATSParser()
        parser.append(bytes("INFO {\"max_payload\":8}\r\nMSG FOO 9 11\r\nHello World\r\n"))
        #expect(try parser.next() == .info(#"{"max_payload":8}"#))
        parser.maxPayloadLength = 8
        #expect(throws: NATSProtocolError.self) { try parser.next() }
    }

    @Test("a payload of exactly the limit is read")
    func payloadAtTheLimit() throws {
        let payload = [UInt8](repeating: 0x2A, count: 1_048_576)
        let stream = bytes("MSG FOO 9 1048576\r\n") + payload + bytes("\r\n")
        let chunks = stride(from: 0, to: stream.count, by: 65_536).map { Array(stream[$0..<min($0 + 65_536, stream.count)]) }
        #expect(try parse(chunks) == [.msg(Message(subject: "FOO", sid: "9", payload: payload))])
    }
}
