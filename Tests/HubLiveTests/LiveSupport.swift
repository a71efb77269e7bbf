import Foundation
import Hub
import HubClient
import HubIngest
import HubProtocol
import HubStorage
import HubTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import Postgres
import Testing

/// Starts the throwaway cluster around the whole live suite.
struct WithTestCluster: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let cluster = try TestCluster()
        defer { cluster.remove() }
        try await TestCluster.$current.withValue(cluster) { try await function() }
    }
}

/// Gives each test of the suite a `HubScope`, which stops what the test started.
struct WithHubScope: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let hubs = HubScope()
        do {
            try await HubScope.$current.withValue(hubs) { try await function() }
        } catch {
            await hubs.stopAll()
            throw error
        }
        await hubs.stopAll()
    }
}

/// What one test started: its hubs and their helpers (executors). Each is stopped, and the
/// stop awaited, when the test ends, whether it passed or threw, newest first; so nothing
/// outlives its test.
final class HubScope: Sendable {
    @TaskLocal static var current: HubScope?
    private let cleanups = NIOLockedValueBox<[@Sendable () async -> Void]>([])

    func append(_ hub: TestHub) { append { await hub.stop() } }

    func append(_ cleanup: @escaping @Sendable () async -> Void) { cleanups.withLockedValue { $0.append(cleanup) } }

    /// Runs `cleanup` (awaited) when the current test ends.
    static func atEnd(_ cleanup: @escaping @Sendable () async -> Void) {
        current?.append(cleanup)
    }

    func stopAll() async {
        for cleanup in cleanups.withLockedValue({ $0 }).reversed() { await cleanup() }
    }
}

extension Trait where Self == WithTestCluster {
    static var withTestCluster: WithTestCluster { WithTestCluster() }
}

extension Trait where Self == WithHubScope {
    /// Each test's hubs and helpers are stopped, and the stop awaited, when it ends.
    static var stopsWhatItStarts: WithHubScope { WithHubScope() }
}

/// A hub on port 0 over its own database, plus the helpers tests use against it.
///
/// `start` hands the hub to the test's `HubScope`, which awaits its stop when the test
/// ends; a test that stops a hub earlier (to restart it) calls `stop()` itself.
struct TestHub: Sendable {
    let hub: Hub
    let databaseURL: String
    let group: MultiThreadedEventLoopGroup
    private let stopped = NIOLockedValueBox(false)

    static let logger: Logger = {
        var logger = Logger(label: "test-hub")
        logger.logLevel = ProcessInfo.processInfo.environment["HUB_TEST_LOG"] == nil ? .critical : .debug
        return logger
    }()

    static let apiToken = "test-full-api-token"
    static let readToken = "test-read-api-token"

    static func start(
        databaseURL: String? = nil, logger: Logger = TestHub.logger, _ configure: (inout HubConfiguration) -> Void = { _ in }
    ) async throws -> TestHub {
        let cluster = try #require(TestCluster.current)
        let url = try databaseURL ?? cluster.makeDatabase()
        var configuration = HubConfiguration()
        configuration.databaseURL = url
        configuration.dataDirectory = cluster.folder.appendingPathComponent("data-\(UUID().uuidString.prefix(8))")
        configuration.server.port = 0
        configuration.server.host = "127.0.0.1"
        configuration.apiToken = TestHub.apiToken
        configuration.readToken = TestHub.readToken
        configure(&configuration)
        let scope = try #require(HubScope.current, "a live test runs inside the suite's scope")
        HubMetrics.bootstrap()
        let hub = try await Hub.start(configuration, logger: logger)
        let started = TestHub(hub: hub, databaseURL: url, group: MultiThreadedEventLoopGroup(numberOfThreads: 1))
        scope.append(started)
        return started
    }

    /// Stops the hub and its clients' event loops, once; later calls return at once.
    func stop() async {
        guard stopped.withLockedValue({ wasStopped in
            defer { wasStopped = true }
            return !wasStopped
        }) else { return }
        await hub.stop()
        try? await group.shutdownGracefully()
    }

    /// Registers a device directly in the database and waits until the hub knows it.
    func addDevice(_ id: String) async throws -> String {
        let token = try DeviceStore(connection: PostgresConnection(url: databaseURL)).add(id: id)
        try await eventually { hub.registry.record(id: id) != nil }
        return token
    }

    func connect(_ id: String, token: String?, tokenInQuery: Bool = false) async throws -> TestDevice {
        let log = EventLog()
        let client = try await DeviceClient.connect(
            host: "127.0.0.1", port: hub.port, deviceID: id, token: token, tokenInQuery: tokenInQuery, group: group,
            onEvent: { log.append($0) })
        return TestDevice(client: client, log: log)
    }

    func dashboard(token: String? = TestHub.apiToken, tokenInQuery: Bool = false) async throws -> TestDashboard {
        let log = MessageLog()
        let client = try await LiveClient.connect(
            host: "127.0.0.1", port: hub.port, token: token, tokenInQuery: tokenInQuery, group: group,
            onMessage: { log.append($0) }, onClose: { log.closed($0) })
        return TestDashboard(client: client, log: log)
    }

    func query(_ sql: String, _ parameters: [String?] = []) throws -> PostgresResult {
        try PostgresConnection(url: databaseURL).query(sql, parameters)
    }

    func count(_ sql: String, _ parameters: [String?] = []) throws -> Int {
        Int(try query(sql, parameters).rows.first?.first??.description ?? "0") ?? 0
    }
}

/// Waits until `condition` holds, failing after `timeout`.
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// A connected test device: the client and every event it received.
struct TestDevice: Sendable {
    let client: DeviceClient
    let log: EventLog

    var welcome: DeviceClient.Welcome { client.welcome }

    /// The highest ack so far (0 if none).
    var highestAck: UInt64 { log.events.compactMap { if case .ack(let seq) = $0 { seq } else { nil } }.max() ?? 0 }

    var texts: [String] { log.events.compactMap { if case .text(let text) = $0 { text } else { nil } } }

    /// The close code, once the connection closed (`.some(nil)` if closed without one).
    var closeCode: UInt16?? { log.events.lazy.compactMap { if case .closed(let code) = $0 { code } else { nil } }.first }

    var isClosed: Bool { log.events.contains { if case .closed = $0 { true } else { false } } }

    func waitForAck(_ seq: UInt64) async throws {
        try await eventually { highestAck >= seq }
    }

    func waitForClose() async throws -> UInt16? {
        try await eventually { isClosed }
        return closeCode ?? nil
    }
}

final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [DeviceClient.Event] = []
    private var observer: (@Sendable (DeviceClient.Event) -> Void)?

    var events: [DeviceClient.Event] { lock.withLock { stored } }

    func append(_ event: DeviceClient.Event) {
        let observer = lock.withLock { stored.append(event); return self.observer }
        observer?(event)
    }

    /// Calls `observer` on the connection's event loop for each later event.
    func observe(_ observer: @escaping @Sendable (DeviceClient.Event) -> Void) {
        lock.withLock { self.observer = observer }
    }
}

/// A frame of `count` readings with distinct, checkable values.
func sampleFrame(seq: UInt64, base: Int64 = 1_763_769_600_000_000, count: Int = 3) -> TelemetryFrame {
    let readings: [Reading] = (0..<count).map { index in
        switch index % 4 {
        case 0: Reading(name: "temp", offsetMicros: Int32(index), value: .f64(Double(seq) + 0.5))
        case 1: Reading(name: "rpm", offsetMicros: Int32(index), value: .i64(Int64(seq) * 10))
        case 2: Reading(name: "door.open", offsetMicros: Int32(index), value: .bool(seq % 2 == 0))
        default: Reading(name: "fw", offsetMicros: Int32(index), value: .string("v\(seq)"))
        }
    }
    return TelemetryFrame(seq: seq, baseTime: base + Int64(seq) * 1000, readings: readings)
}

enum HubStorageAccess {
    static func store(_ url: String) throws -> DeviceStore {
        DeviceStore(connection: try PostgresConnection(url: url))
    }
}

/// A connected test dashboard and every message it received, parsed.
struct TestDashboard: Sendable {
    let client: LiveClient
    let log: MessageLog

    var messages: [[String: Any]] {
        log.texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func messages(ofType type: String) -> [[String: Any]] { messages.filter { $0["type"] as? String == type } }

    func send(_ json: String) { client.send(json) }

    /// Sends a subscribe and waits for `subscribed`.
    func subscribe(_ json: String, id: String) async throws {
        client.send(json)
        try await eventually { messages(ofType: "subscribed").contains { $0["id"] as? String == id } }
    }
}

final class MessageLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    private var closeCode: UInt16??

    var texts: [String] { lock.withLock { stored } }
    var isClosed: Bool { lock.withLock { closeCode != nil } }
    func append(_ text: String) { lock.withLock { stored.append(text) } }
    func closed(_ code: UInt16?) { lock.withLock { closeCode = .some(code) } }
}
