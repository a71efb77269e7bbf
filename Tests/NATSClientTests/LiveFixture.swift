import Logging
import NATS
import NATSClient
import NIOConcurrencyHelpers
import NIOPosix

/// One live test's server and connections; `withLiveServer` shuts them all down and kills
/// the server at the end, whether the test passed or threw.
final class LiveFixture: Sendable {
    let server: NATSServer
    private let connections = NIOLockedValueBox<[NATSConnection]>([])

    init(server: NATSServer) { self.server = server }

    /// A connection to the server with fast reconnects; started and, unless `start` is false,
    /// connected (within 5 s) when this returns.
    func connection(
        _ name: String, start: Bool = true, configure: (inout NATSConnection.Configuration) -> Void = { _ in }
    ) async throws -> NATSConnection {
        var configuration = try NATSConnection.Configuration(url: server.url, name: name)
        configuration.minReconnectDelayNanos = 10_000_000
        configuration.maxReconnectDelayNanos = 200_000_000
        configure(&configuration)
        var logger = Logger(label: "nats-test.\(name)")
        logger.logLevel = .warning
        let connection = NATSConnection(
            configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger)
        connections.withLockedValue { $0.append(connection) }
        if start {
            connection.start()
            try await eventually("\(name) is connected") { connection.isConnected }
        }
        return connection
    }

    func tearDown() async {
        for connection in connections.withLockedValue({ $0 }) { await connection.shutdown() }
        server.remove()
    }
}

/// Runs `body` with a fresh server (with `max_payload` when given), then tears it down.
func withLiveServer(maxPayload: Int? = nil, _ body: (LiveFixture) async throws -> Void) async throws {
    let server = try NATSServer(maxPayload: maxPayload)
    let fixture = LiveFixture(server: server)
    do {
        try await server.start()
        try await body(fixture)
    } catch {
        await fixture.tearDown()
        throw error
    }
    await fixture.tearDown()
}

/// Polls `condition` until it holds; throws (failing the test) after `seconds`.
func eventually(_ what: String, within seconds: Int = 5, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while !condition() {
        guard ContinuousClock.now < deadline else { throw LiveTestError("timed out after \(seconds) s waiting until \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// The messages a subscription handler was given, in order.
final class Received: Sendable {
    private let box = NIOLockedValueBox<[Message]>([])

    var handler: @Sendable (Message) -> Void { { message in self.box.withLockedValue { $0.append(message) } } }
    var messages: [Message] { box.withLockedValue { $0 } }
    var count: Int { box.withLockedValue { $0.count } }
}

/// A thread-safe counter for handlers and completions.
final class Counter: Sendable {
    private let box = NIOLockedValueBox(0)
    func increment() { box.withLockedValue { $0 += 1 } }
    var value: Int { box.withLockedValue { $0 } }
}
