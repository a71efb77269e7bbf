import ArgumentParser
import Foundation
import Hub
import HubStorage
import Logging
import NIOPosix
import Postgres
import ServiceLifecycle

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the hub on the embedded default with a simulated fleet, and print the dashboard's address.")

    @OptionGroup var database: DatabaseOptions
    @Option(help: "Port (default 8080).") var port = 8080
    @Option(help: "Simulated devices.") var devices = 20
    @Option(name: .customLong("interval"), help: "Seconds between a device's frames.") var intervalSeconds = 1.0

    func run() async throws {
        let logger = database.makeLogger()
        var configuration = HubConfiguration()
        configuration.dataDirectory = database.resolvedDataDirectory
        configuration.databaseURL = database.resolvedDatabaseURL
        configuration.server.port = port
        let fleet = DemoFleet(count: devices, interval: intervalSeconds, logger: logger)
        let service = HubService(configuration: configuration, logger: logger) { hub in
            Banner.print(hub)
            Task { await fleet.start(hub) }
        }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        await fleet.stop()
    }
}

/// The demo's devices: `demo-01` …, registered (or given fresh tokens) on start; two in
/// three answer `set_interval` and `reboot`.
actor DemoFleet {
    private let count: Int
    private let interval: Double
    private let logger: Logger
    private var simulated: [SimulatedDevice] = []
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    init(count: Int, interval: Double, logger: Logger) {
        self.count = count
        self.interval = interval
        self.logger = logger
    }

    func start(_ hub: Hub) async {
        do {
            let store = DeviceStore(connection: try PostgresConnection(url: hub.database.url))
            for index in 1...count {
                let id = String(format: "demo-%02d", index)
                let token = try (try? store.add(id: id, labelsJSON: #"{"fleet":"demo"}"#)) ?? store.rotateToken(id: id)
                var settings = SimulatedDevice.Settings()
                settings.interval = .milliseconds(Int64(interval * 1000))
                settings.answersCommands = index % 3 != 0
                simulated.append(try SimulatedDevice(
                    id: id, token: token, host: "127.0.0.1", port: hub.port, group: group, settings: settings))
            }
        } catch {
            logger.error("demo fleet could not register its devices", metadata: ["error": "\(error)"])
            return
        }
        for device in simulated { Task { await device.run() } }
        Banner.write([
            "  dashboard    http://localhost:\(hub.port)/?token=\(hub.apiToken)",
            "  demo fleet   \(count) devices (demo-01 …); two in three answer set_interval {\"seconds\":N} and reboot",
        ])
    }

    func stop() async {
        for device in simulated { await device.stop() }
        try? await group.shutdownGracefully()
    }
}
