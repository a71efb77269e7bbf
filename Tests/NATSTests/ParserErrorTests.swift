import NATS
import Testing

@Suite("NATS parser: errors")
struct ParserErrorTests {
    @Test("each broken stream is refused with the rule it breaks", arguments: [
        ("FOO bar\r\n", NATSProtocolError.Code.unknownOperation),
        ("\r\n", .unknownOperation),
        ("PINGPONG\r\n", .unknownOperation),
        ("+OKAY\r\n", .unknownOperation),
        ("PUB FOO 0\r\n\r\n", .unknownOperation),
        ("MSG FOO.BAR 11\r\nHello World\r\n", .badFieldCount),
        ("MSG A B C D 11\r\nHello World\r\n", .badFieldCount),
        ("HMSG FOO.BAR 9 45\r\n", .badFieldCount),
        ("HMSG A B C D 34 45\r\n", .badFieldCount),
        ("PING now\r\n", .badFieldCount),
        ("+OK ok\r\n", .badFieldCount),
        ("INFO\r\n", .badFieldCount),
        ("INFO \t \r\n", .badFieldCount),
        ("MSG FOO 9 1x\r\n", .badNumber),
        ("MSG FOO 9 -1\r\n", .badNumber),
        ("MSG FOO 9 +1\r\n", .badNumber),
        ("MSG FOO 9 99999999999999999999999\r\n", .badNumber),
        ("HMSG FOO 9 x 45\r\n", .badNumber),
        ("HMSG FOO 9 34 4.5\r\n", .badNumber),
        ("HMSG FOO 9 46 45\r\n", .badHeaderLength),
        ("PING\n", .badLineEnding),
        ("\n", .badLineEnding),
        ("MSG FOO 9 5\r\nHello World\r\n", .missingPayloadTerminator),
        ("MSG FOO 9 11\r\nHello World!\r\n", .missingPayloadTerminator),
        ("MSG FOO 9 11\r\nHello World\n\r", .missingPayloadTerminator),
    ])
    func brokenStreams(stream: String, code: NATSProtocolError.Code) {
        #expect(parseError(stream)?.code == code, "\(stream.debugDescription)")
    }

    @Test("text that is not UTF-8 is refused", arguments: [
        bytes("MSG ") + [0xFF] + bytes(" 9 0\r\n\r\n"),
        bytes("MSG FOO ") + [0xC3] + bytes(" 0\r\n\r\n"),
        bytes("MSG FOO 9 ") + [0x80] + bytes(" 0\r\n\r\n"),
        bytes("INFO {") + [0xFE] + bytes("}\r\n"),
        bytes("-ERR '") + [0xFF] + bytes("'\r\n"),
    ])
    func notUTF8(stream: [UInt8]) {
        #expect(parseError(stream)?.code == .notUTF8)
    }

    @Test("descriptions name the rule and numbers, never the bytes sent")
    func descriptions() {
        #expect(parseError("SECRETOP x\r\n")?.description == "unknown_operation: unknown operation of 8 bytes")
        #expect(parseError("MSG FOO 11\r\n")?.description == "bad_field_count: MSG takes 3 or 4 fields, got 2")
        #expect(parseError("HMSG FOO 9 34\r\n")?.description == "bad_field_count: HMSG takes 4 or 5 fields, got 3")
        #expect(parseError("PING x\r\n")?.description == "bad_field_count: PING takes no fields")
        #expect(parseError("MSG FOO 9 x\r\n")?.description == "bad_number: MSG #bytes is not a number")
        #expect(parseError("HMSG FOO 9 1 x\r\n")?.description == "bad_number: HMSG #total bytes is not a number")
        #expect(parseError("HMSG FOO 9 x 1\r\n")?.description == "bad_number: HMSG #header bytes is not a number")
        #expect(parseError("HMSG FOO 9 46 45\r\n")?.description == "bad_header_length: HMSG announces 46 header bytes of 45")
        #expect(parseError("PING\n")?.description == "bad_line_ending: control line ends in LF without CR")
        #expect(parseError("MSG FOO 9 5\r\nHello World\r\n")?.description
            == "missing_payload_terminator: no CRLF after the 5 announced bytes")
        #expect(parseError(bytes("MSG FOO 9 ") + [0xFF] + bytes(" 0\r\n"))?.description
            == "not_utf8: MSG reply-to is not UTF-8")
    }

    @Test("ops before the broken one still come out")
    func opsBeforeAnErrorArrive() throws {
        var parser = NATSParser()
        parser.append(bytes("PING\r\n+OK\r\nBOGUS\r\nPONG\r\n"))
        #expect(try parser.next() == .ping)
        #expect(try parser.next() == .ok)
        #expect(throws: NATSProtocolError.self) { try parser.next() }
    }

    @Test("after an error the parser keeps refusing, even when good bytes follow")
    func errorsAreFinal() {
        var parser = NATSParser()
        parser.append(bytes("BOGUS\r\n"))
        var first: NATSProtocolError?
        do throws(NATSProtocolError) { _ = try parser.next() } catch { first = error }
        #expect(first?.code == .unknownOperation)
        #expect(parser.bufferedByteCount == 0)
        parser.append(bytes("PING\r\n"))
        var second: NATSProtocolError?
        do throws(NATSProtocolError) { _ = try parser.next() } catch { second = error }
        #expect(second == first)
    }

    @Test("every code has a distinct name")
    func codeNames() {
        let names = Set(NATSProtocolError.Code.allCases.map(\.rawValue))
        #expect(names.count == NATSProtocolError.Code.allCases.count)
        #expect(NATSProtocolError.Code.allCases.count == 14)
    }
}
