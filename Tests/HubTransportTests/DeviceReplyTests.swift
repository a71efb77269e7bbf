import Foundation
import Testing

@testable import HubTransport

@Suite("Device text messages, read once")
struct DeviceReplyTests {
    func parse(_ text: String, maxBytes: Int = 1_024) -> Result<DeviceReply, DeviceReply.Refusal> {
        DeviceReply.parse(Data(text.utf8), maxBytes: maxBytes)
    }

    @Test("command_ack and command_result are read with their fields")
    func replies() throws {
        #expect(try parse(#"{"type":"command_ack","id":"c1"}"#).get() == .acknowledged(id: "c1"))
        #expect(try parse(#"{"type":"command_result","id":"c1","ok":true,"result":{"a":[1,2]}}"#).get()
            == .finished(id: "c1", ok: true, resultJSON: #"{"a":[1,2]}"#, error: nil))
        #expect(try parse(#"{"type":"command_result","id":"c1","ok":false,"error":"disk full"}"#).get()
            == .finished(id: "c1", ok: false, resultJSON: nil, error: "disk full"))
        // An error that is not a string is kept as its JSON text.
        #expect(try parse(#"{"type":"command_result","id":"c1","ok":false,"error":{"code":7}}"#).get()
            == .finished(id: "c1", ok: false, resultJSON: nil, error: #"{"code":7}"#))
    }

    @Test("what is not a reply is refused with a code and a reason")
    func refusals() {
        let cases: [(String, String)] = [
            ("not json", "bad_message"),
            (#"[1]"#, "bad_message"),
            (#"{"id":"c1"}"#, "bad_message"),
            (#"{"type":"command_ack"}"#, "bad_message"),
            (#"{"type":"command_ack","id":7}"#, "bad_message"),
            (#"{"type":"command_result","id":"c1"}"#, "bad_message"),
            (#"{"type":"command_result","id":"c1","ok":"yes"}"#, "bad_message"),
            (#"{"type":"reboot","id":"c1"}"#, "bad_message"),
            (#"{"type":"command_result","id":"c1","ok":true,"result":"a\u0000b"}"#, "bad_message"),
        ]
        for (text, code) in cases {
            guard case .failure(let refusal) = parse(text) else {
                Issue.record("accepted \(text)")
                continue
            }
            #expect(refusal.code == code, "\(text)")
            #expect(!refusal.message.isEmpty)
        }
        guard case .failure(let large) = parse(#"{"type":"command_ack","id":"c1"}"#, maxBytes: 10) else {
            Issue.record("a message over the limit was read")
            return
        }
        #expect(large.code == "too_large")
        #expect(large.message.contains("10 bytes"))
    }
}
