import Foundation
import NATS
@testable import NATSClient
import Testing

@Suite("NATS client: CONNECT options")
struct ConnectOptionsTests {
    @Test("the options are one line of JSON, keys sorted, echo off, headers and no_responders on")
    func golden() throws {
        let line = try NATSEncoder.connect(json: ConnectOptions(name: "hub-1").json)
        let expected = #"CONNECT {"echo":false,"headers":true,"lang":"swift","name":"hub-1","no_responders":true,"#
            + #""pedantic":false,"protocol":1,"verbose":false,"version":"0.1.0"}"# + "\r\n"
        #expect(String(decoding: line, as: UTF8.self) == expected)
    }

    @Test("a name with quotes, slashes and line breaks stays inside its JSON string")
    func escapedName() throws {
        let name = "a \"b\"\r\n/c\\"
        let json = ConnectOptions(name: name).json
        #expect(!json.contains("\r") && !json.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["name"] as? String == name)
        #expect(object["echo"] as? Bool == false)
        _ = try NATSEncoder.connect(json: json)
    }
}
