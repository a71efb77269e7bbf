import NATS
@testable import NATSClient
import Testing

@Suite("NATS client: the no-responders status")
struct NoRespondersTests {
    func message(headers: String?, payload: [UInt8] = []) -> Message {
        Message(subject: "_INBOX.x.1", sid: "0", headers: headers.map { Array($0.utf8) }, payload: payload)
    }

    @Test("an HMSG with status 503 and no payload is the no-responders answer")
    func recognised() {
        #expect(message(headers: "NATS/1.0 503\r\n\r\n").isNoRespondersStatus)
        #expect(message(headers: "NATS/1.0 503 No Responders\r\n\r\n").isNoRespondersStatus)
    }

    @Test("other replies are not", arguments: [
        ("NATS/1.0\r\n\r\n", 0), ("NATS/1.0 5031\r\n\r\n", 0), ("NATS/1.0 408\r\n\r\n", 0), ("NATS/1.0 503\r\n\r\n", 3),
    ])
    func notRecognised(headers: String, payloadCount: Int) {
        #expect(!message(headers: headers, payload: Array(repeating: 1, count: payloadCount)).isNoRespondersStatus)
        #expect(!message(headers: nil).isNoRespondersStatus)
    }
}
