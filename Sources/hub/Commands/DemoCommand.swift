import ArgumentParser
import Foundation
import Hub
import HubStorage
import Logging
import NIOCore
import NIOPosix
import Postgres
import ServiceLifecycle

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the hub on the embedded default with a simulated fleet, and print the dashboard's address.")

    @OptionGroup var database: DatabaseOptions
    @Option(help: "Port (default 8080).") var port = 8080
    @Option(help: "Simulated devices (0 to 10000).") var devices = 20
    @Option(name: .customLong("interval"), help: "Seconds between a device's frames (0.01 to 3600).") var intervalSeconds = 1.0

    func validate() throws {
        guard (0...10_000).contains(devices) else { throw ValidationError("--devices must be from 0 to 10000") }
        guard intervalSeconds.isFinite, (0.01...3_600).contains(intervalSeconds) else {
            throw ValidationError("--interval must be from 0.01 to 3600 seconds")
        }
    }

    func run() async throws {
        let logger = database.makeLogger()
        var configuration = HubConfiguration()
        configuration.dataDirectory = database.resolvedDataDirectory
        configuration.databaseURL = database.resolvedDatabaseURL
        configuration.server.port = port
        let (started, announce) = AsyncStream.makeStream(of: Hub.self, bufferingPolicy: .bufferingNewest(1))
        let service = HubService(configuration: configuration, logger: logger) { hub in
            Banner.print(hub)
            announce.yield(hub)
            announce.finish()
        }
        let fleet = DemoFleet(count: devices, interval: intervalSeconds, started: started, logger: logger)
        // Shutdown runs in reverse: the fleet stops (its last frames acked) before the hub.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service), .init(service: fleet)], gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}

/// The demo's devices: `demo-01` …, registered (or given fresh tokens) once the hub is up;
/// two in three answer `set_interval` and `reboot`. On shutdown every device stops (waiting
/// for its acks) and the fleet's event loop ends with it.
struct DemoFleet: Service {
    let count: Int
    let interval: Double
    /// Yields the hub once it accepts connections.
    let started: AsyncStream<Hub>
    let logger: Logger

    func run() async throws {
        let started = self.started
        guard let hub = await cancelWhenGracefulShutdown({ await started.first { _ in true } }) else { return }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let devices: [SimulatedDevice]
        do {
            devices = try register(on: hub, group: group)
        } catch {
            logger.error("demo fleet could not register its devices", metadata: ["error": "\(error)"])
            try await group.shutdownGracefully()
            return
        }
        Banner.write([
            "  dashboard    http://localhost:\(hub.port)/?token=\(hub.apiToken)",
            "  demo fleet   \(count) devices (demo-01 …); two in three answer set_interval {\"seconds\":N} and reboot",
        ])
        await withDiscardingTaskGroup { running in
            for device in devices { running.addTask { await device.run() } }
            try? await gracefulShutdown()
            for device in devices { running.addTask { await device.stop() } }
        }
        try await group.shutdownGracefully()
    }

    private func register(on hub: Hub, group: EventLoopGroup) throws -> [SimulatedDevice] {
        let store = DeviceStore(connection: try PostgresConnection(url: hub.database.url))
        guard count > 0 else { return [] }
        return try (1...count).map { index in
            let id = String(format: "demo-%02d", index)
            let token = try (try? store.add(id: id, labelsJSON: #"{"fleet":"demo"}"#)) ?? store.rotateToken(id: id)
            var settings = SimulatedDevice.Settings()
            settings.interval = .milliseconds(Int64(interval * 1000))
            settings.answersCommands = index % 3 != 0
            return try SimulatedDevice(id: id, token: token, host: "127.0.0.1", port: hub.port, group: group, settings: settings)
        }
    }
}
