@testable import NATSClient
import Testing

@Suite("NATS client: the server's INFO")
struct ServerInfoTests {
    /// What nats-server 2.9.10 sends, as the parser hands it out.
    static let real = #"{"server_id":"NCPJ6K4JXS3C2ZQFN775QVAF2QR3BXO7HNNE5EIOUDW6KGV7CE2C6LSK","server_name":"NCPJ6K4JXS3C2ZQFN775QVAF2QR3BXO7HNNE5EIOUDW6KGV7CE2C6LSK","version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","port":14999,"headers":true,"max_payload":1048576,"client_id":4,"client_ip":"127.0.0.1"} "#

    @Test("a real server's INFO gives its max_payload, version and header support")
    func real() {
        let info = ServerInfo(json: Self.real)
        #expect(info == ServerInfo(
            serverID: "NCPJ6K4JXS3C2ZQFN775QVAF2QR3BXO7HNNE5EIOUDW6KGV7CE2C6LSK", version: "2.9.10",
            maxPayload: 1_048_576, headers: true))
    }

    @Test("only max_payload is required")
    func minimal() {
        #expect(ServerInfo(json: #"{"max_payload":1024}"#) == ServerInfo(maxPayload: 1024))
    }

    @Test("an INFO that is not an object, or lacks a positive integer max_payload, is refused", arguments: [
        "", "not json", "[1024]", #"{"max_payload":1024"#, "{}", #"{"max_payload":0}"#, #"{"max_payload":-5}"#,
        #"{"max_payload":"1024"}"#, #"{"max_payload":10.5}"#, #"{"max_payload":1024,"headers":"yes"}"#,
    ])
    func refused(json: String) {
        #expect(ServerInfo(json: json) == nil)
    }
}
