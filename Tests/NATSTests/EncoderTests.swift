import NATS
import Testing

@Suite("NATS encoder")
struct EncoderTests {
    /// The text of encoded bytes, so a failure shows readable CRLFs.
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// The error `encode` throws, or `nil` when it writes bytes.
    func error(_ encode: () throws -> [UInt8]) -> NATSProtocolError? {
        do {
            _ = try encode()
            return nil
        } catch {
            return error as? NATSProtocolError
        }
    }

    @Test("CONNECT writes the caller's JSON as one line")
    func connect() throws {
        let json = #"{"verbose":false,"pedantic":false,"tls_required":false,"name":"","lang":"go","version":"1.2.2","protocol":1}"#
        #expect(try text(NATSEncoder.connect(json: json)) == "CONNECT \(json)\r\n")
    }

    @Test("PUB matches the reference's examples")
    func publish() throws {
        #expect(try text(NATSEncoder.publish(subject: "FOO", payload: bytes("Hello NATS!"))) == "PUB FOO 11\r\nHello NATS!\r\n")
        #expect(try text(NATSEncoder.publish(subject: "FRONT.DOOR", replyTo: "INBOX.22", payload: bytes("Knock Knock")))
            == "PUB FRONT.DOOR INBOX.22 11\r\nKnock Knock\r\n")
        #expect(try text(NATSEncoder.publish(subject: "NOTIFY", payload: [UInt8]())) == "PUB NOTIFY 0\r\n\r\n")
    }

    @Test("a PUB payload is written as is, CRLF and all")
    func publishBinaryPayload() throws {
        let payload: [UInt8] = [0x00, 0x0D, 0x0A, 0xFF]
        #expect(try NATSEncoder.publish(subject: "A", payload: payload) == bytes("PUB A 4\r\n") + payload + bytes("\r\n"))
    }

    @Test("HPUB matches the reference's examples")
    func publishWithHeaders() throws {
        #expect(try text(NATSEncoder.publish(
            subject: "FOO", headers: bytes("NATS/1.0\r\nBar: Baz\r\n\r\n"), payload: bytes("Hello NATS!")))
            == "HPUB FOO 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello NATS!\r\n")
        #expect(try text(NATSEncoder.publish(
            subject: "FRONT.DOOR", replyTo: "INBOX.22",
            headers: bytes("NATS/1.0\r\nBREAKFAST: donut\r\nLUNCH: burger\r\n\r\n"), payload: bytes("Knock Knock")))
            == "HPUB FRONT.DOOR INBOX.22 45 56\r\nNATS/1.0\r\nBREAKFAST: donut\r\nLUNCH: burger\r\n\r\nKnock Knock\r\n")
        #expect(try text(NATSEncoder.publish(
            subject: "NOTIFY", headers: bytes("NATS/1.0\r\nBar: Baz\r\n\r\n"), payload: [UInt8]()))
            == "HPUB NOTIFY 22 22\r\nNATS/1.0\r\nBar: Baz\r\n\r\n\r\n")
        #expect(try text(NATSEncoder.publish(
            subject: "MORNING.MENU", headers: bytes("NATS/1.0\r\nBREAKFAST: donut\r\nBREAKFAST: eggs\r\n\r\n"),
            payload: bytes("Yum!")))
            == "HPUB MORNING.MENU 47 51\r\nNATS/1.0\r\nBREAKFAST: donut\r\nBREAKFAST: eggs\r\n\r\nYum!\r\n")
    }

    @Test("SUB, UNSUB, PING and PONG match the reference's examples")
    func controlOps() throws {
        #expect(try text(NATSEncoder.subscribe(subject: "FOO", sid: "1")) == "SUB FOO 1\r\n")
        #expect(try text(NATSEncoder.subscribe(subject: "BAR", queueGroup: "G1", sid: "44")) == "SUB BAR G1 44\r\n")
        #expect(try text(NATSEncoder.subscribe(subject: "foo.*.quux", sid: "90")) == "SUB foo.*.quux 90\r\n")
        #expect(try text(NATSEncoder.unsubscribe(sid: "1")) == "UNSUB 1\r\n")
        #expect(try text(NATSEncoder.unsubscribe(sid: "1", maxMessages: 5)) == "UNSUB 1 5\r\n")
        #expect(text(NATSEncoder.ping) == "PING\r\n")
        #expect(text(NATSEncoder.pong) == "PONG\r\n")
    }

    @Test("a subject or reply-to that would break the line is refused", arguments: [
        "", "FOO BAR", "FOO\tBAR", "FOO\r\nPUB EVIL 0", "FOO\n", "FOO\r", " FOO",
    ])
    func badSubjects(subject: String) {
        #expect(error { try NATSEncoder.publish(subject: subject, payload: [UInt8]()) }?.code == .invalidSubject)
        #expect(error { try NATSEncoder.publish(subject: "OK", replyTo: subject, payload: [UInt8]()) }?.code == .invalidSubject)
        #expect(error {
            try NATSEncoder.publish(subject: subject, headers: bytes("NATS/1.0\r\n\r\n"), payload: [UInt8]())
        }?.code == .invalidSubject)
        #expect(error { try NATSEncoder.subscribe(subject: subject, sid: "1") }?.code == .invalidSubject)
    }

    @Test("a bad queue group, sid, CONNECT text or header block is refused")
    func otherBadFields() {
        #expect(error { try NATSEncoder.subscribe(subject: "A", queueGroup: "G 1", sid: "1") }?.code == .invalidQueueGroup)
        #expect(error { try NATSEncoder.subscribe(subject: "A", queueGroup: "", sid: "1") }?.code == .invalidQueueGroup)
        #expect(error { try NATSEncoder.subscribe(subject: "A", sid: "") }?.code == .invalidSid)
        #expect(error { try NATSEncoder.unsubscribe(sid: "1 2") }?.code == .invalidSid)
        #expect(error { try NATSEncoder.connect(json: "{}\r\nPUB EVIL 0") }?.code == .invalidConnectOptions)
        #expect(error { try NATSEncoder.connect(json: "") }?.code == .invalidConnectOptions)
        for headers in ["", "Bar: Baz\r\n\r\n", "NATS/1.0\r\nBar: Baz\r\n", "NATS/1.0\r\n"] {
            #expect(error {
                try NATSEncoder.publish(subject: "A", headers: bytes(headers), payload: [UInt8]())
            }?.code == .invalidHeaders, "\(headers.debugDescription)")
        }
    }

    @Test("refusals name the field without repeating it")
    func refusalDescriptions() {
        #expect(error { try NATSEncoder.publish(subject: "secret topic", payload: [UInt8]()) }?.description
            == "invalid_subject: subject contains a space, tab, CR or LF")
        #expect(error { try NATSEncoder.publish(subject: "A", replyTo: "", payload: [UInt8]()) }?.description
            == "invalid_subject: reply-to is empty")
    }

    @Test("a message written by HPUB, sent back by the server as HMSG, reads back the same")
    func headersRoundTrip() throws {
        let headers = bytes("NATS/1.0\r\nBar: Baz\r\n\r\n")
        let published = try NATSEncoder.publish(subject: "FOO", headers: headers, payload: bytes("Hello NATS!"))
        // The server delivers what was published with `HPUB` as `HMSG`, adding the sid.
        let prefix = bytes("HPUB FOO")
        #expect(published.starts(with: prefix))
        let delivered = bytes("HMSG FOO 7") + published.dropFirst(prefix.count)
        #expect(text(delivered) == "HMSG FOO 7 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello NATS!\r\n")
        #expect(try parse([delivered]) == [.msg(Message(subject: "FOO", sid: "7", headers: headers, payload: bytes("Hello NATS!")))])
    }
}
