import NATS
import Testing

/// The server operations of the NATS Client Protocol reference, byte for byte.
enum Golden {
    static let info = #"{"server_id":"Zk0GQ3JBSrg3oyxCRRlE09","version":"1.2.0","proto":1,"go":"go1.10.3","host":"0.0.0.0","port":4222,"max_payload":1048576,"client_id":2392}"#
    static let foodHeaders = "NATS/1.0\r\nFoodGroup: vegetable\r\n\r\n"

    static let vectors: [(wire: String, op: ServerOp)] = [
        ("INFO \(info)\r\n", .info(info)),
        ("MSG FOO.BAR 9 11\r\nHello World\r\n", msg("FOO.BAR", "9", "Hello World")),
        ("MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n", msg("FOO.BAR", "9", replyTo: "GREETING.34", "Hello World")),
        ("HMSG FOO.BAR 9 34 45\r\n\(foodHeaders)Hello World\r\n", msg("FOO.BAR", "9", headers: foodHeaders, "Hello World")),
        ("HMSG FOO.BAR 9 BAZ.69 34 45\r\n\(foodHeaders)Hello World\r\n",
         msg("FOO.BAR", "9", replyTo: "BAZ.69", headers: foodHeaders, "Hello World")),
        ("PING\r\n", .ping),
        ("PONG\r\n", .pong),
        ("+OK\r\n", .ok),
        ("-ERR 'Unknown Protocol Operation'\r\n", .err("Unknown Protocol Operation")),
        ("-ERR 'Stale Connection'\r\n", .err("Stale Connection")),
    ]

    /// Every vector, one after another, as the server could send them.
    static var stream: String { vectors.map(\.wire).joined() }
    static var ops: [ServerOp] { vectors.map(\.op) }
}

@Suite("NATS parser: golden operations")
struct ParserGoldenTests {
    @Test("each example from the reference parses to its op", arguments: Golden.vectors.indices)
    func vectorParses(index: Int) throws {
        let vector = Golden.vectors[index]
        #expect(try parse(vector.wire) == [vector.op])
    }

    @Test("several ops given in one append come out in order")
    func severalOpsInOneAppend() throws {
        let ops = try parse(Golden.stream)
        #expect(ops.count == 10)
        #expect(ops == Golden.ops)
    }

    @Test("an HMSG keeps its header section, CRLF CRLF included, apart from the payload")
    func headersAreKeptApart() throws {
        guard case .msg(let message) = try parse(Golden.vectors[3].wire).first else {
            Issue.record("no message")
            return
        }
        #expect(message.headers?.count == 34)
        #expect(message.headers == bytes("NATS/1.0\r\nFoodGroup: vegetable\r\n\r\n"))
        #expect(message.payload == bytes("Hello World"))
        #expect(message.replyTo == nil)
    }

    @Test("an empty MSG and an HMSG with only headers parse")
    func emptyBodies() throws {
        let ops = try parse("MSG NOTIFY 1 0\r\n\r\nHMSG FOO.BAR 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")
        #expect(ops == [msg("NOTIFY", "1", ""), msg("FOO.BAR", "9", headers: "NATS/1.0 503\r\n\r\n", "")])
    }

    @Test("a payload holding CRLF and op names is read by its byte count, not by lines")
    func payloadWithCRLF() throws {
        let ops = try parse("MSG A 1 12\r\nline1\r\nline2\r\nMSG B 2 8\r\n\r\nPING\r\n\r\nPONG\r\n")
        #expect(ops == [msg("A", "1", "line1\r\nline2"), msg("B", "2", "\r\nPING\r\n"), .pong])
    }

    @Test("op names are matched without regard to case")
    func lowercaseNames() throws {
        let ops = try parse(
            "msg FOO.BAR 9 11\r\nHello World\r\nhMsG FOO.BAR 9 34 45\r\n\(Golden.foodHeaders)Hello World\r\n"
                + "info {}\r\nping\r\nPong\r\n+ok\r\n-err 'Slow Consumer'\r\n")
        #expect(ops == [
            msg("FOO.BAR", "9", "Hello World"), msg("FOO.BAR", "9", headers: Golden.foodHeaders, "Hello World"),
            .info("{}"), .ping, .pong, .ok, .err("Slow Consumer"),
        ])
    }

    @Test("fields may be separated by several spaces and tabs, and the line may end in them")
    func spacesAndTabs() throws {
        let ops = try parse("MSG\tFOO.BAR  9 \t GREETING.34\t11 \r\nHello World\r\nPING \t\r\nINFO \t {\"a\": 1}  \r\n")
        #expect(ops == [msg("FOO.BAR", "9", replyTo: "GREETING.34", "Hello World"), .ping, .info(#"{"a": 1}"#)])
    }

    @Test("an -ERR message without quotes, or with no message, is given as sent")
    func errWithoutQuotes() throws {
        #expect(try parse("-ERR Authorization Violation\r\n-ERR\r\n-ERR '\r\n") == [
            .err("Authorization Violation"), .err(""), .err("'"),
        ])
    }

    @Test("no op comes out until its last byte has arrived")
    func incompleteGivesNil() throws {
        var parser = NATSParser()
        parser.append(bytes("MSG FOO.BAR 9 11\r\nHello World\r"))
        #expect(try parser.next() == nil)
        #expect(try parser.next() == nil)
        parser.append([0x0A])
        #expect(try parser.next() == msg("FOO.BAR", "9", "Hello World"))
        #expect(try parser.next() == nil)
    }
}
