import NATSClient
import Testing

@Suite("NATS client: server URLs")
struct ConfigurationTests {
    @Test("a nats URL gives host and port, 4222 by default", arguments: [
        ("nats://127.0.0.1:4223", "127.0.0.1", 4223),
        ("nats://nats.internal", "nats.internal", 4222),
        ("NATS://Broker:1/", "Broker", 1),
        ("nats://[::1]:5000", "::1", 5000),
        ("nats://[fe80::1]", "fe80::1", 4222),
    ])
    func parses(url: String, host: String, port: Int) throws {
        let configuration = try NATSConnection.Configuration(url: url, name: "t")
        #expect(configuration.host == host)
        #expect(configuration.port == port)
        #expect(configuration.name == "t")
    }

    @Test("a URL this client cannot use is refused with its reason", arguments: [
        ("tls://host:4222", NATSConfigurationError.Code.unsupportedScheme),
        ("host:4222", .unsupportedScheme),
        ("nats://", .missingHost),
        ("nats://:4222", .missingHost),
        ("nats://host:", .invalidPort),
        ("nats://host:0", .invalidPort),
        ("nats://host:65536", .invalidPort),
        ("nats://host:+42", .invalidPort),
        ("nats://host:x", .invalidPort),
        ("nats://[::1]x", .invalidPort),
        ("nats://user:secret@host:4222", .unsupportedPart),
        ("nats://host:4222/path", .unsupportedPart),
        ("nats://a:1,nats://b:2", .unsupportedPart),
    ])
    func refused(url: String, code: NATSConfigurationError.Code) {
        #expect(throws: NATSConfigurationError.self) { try NATSConnection.Configuration(url: url, name: "t") }
        do {
            _ = try NATSConnection.Configuration(url: url, name: "t")
        } catch {
            #expect(error.code == code)
            #expect(!error.description.contains("secret"))
        }
    }
}
