import ArgumentParser
import Foundation
import Hub
import Logging
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the hub (the default command).")

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Port for devices, dashboards, the REST API and the page (env HUB_PORT; default 8080; 0 picks one).")
    var port: Int?

    @Option(help: "Address to listen on (env HUB_HOST; default 0.0.0.0).")
    var host: String?

    @Option(name: .customLong("api-token"), help: "Full-rights API token (env HUB_API_TOKEN; default: generated into the data folder).")
    var apiToken: String?

    @Option(name: .customLong("read-token"), help: "Read-only API token: may subscribe on /live, not send commands (env HUB_READ_TOKEN).")
    var readToken: String?

    @Flag(name: .customLong("auto-provision"), help: "Development only: any well-formed device id may connect without a token and is registered on first connect (env HUB_AUTO_PROVISION=1).")
    var autoProvision = false

    @Option(name: .customLong("batch-rows"), help: "Flush an ingest batch at this many readings (default 5000).")
    var batchRows: Int?

    @Option(name: .customLong("flush-ms"), help: "…or when its oldest reading has waited this many milliseconds (default 20).")
    var flushMilliseconds: Int?

    @Option(name: .customLong("queue-rows"), help: "Ingest queue bound in readings; over it the hub stops reading device sockets (default 200000).")
    var queueRows: Int?

    @Option(name: .customLong("max-frame-bytes"), help: "Largest device message; larger closes with 1009 (default 65536).")
    var maxFrameBytes: Int?

    @Option(name: .customLong("heartbeat"), help: "Seconds between pings; silent peers are closed after twice this (default 30).")
    var heartbeatSeconds: Int?

    func run() async throws {
        let logger = database.makeLogger()
        var configuration = HubConfiguration()
        configuration.dataDirectory = database.resolvedDataDirectory
        configuration.databaseURL = database.resolvedDatabaseURL
        configuration.apiToken = apiToken ?? Environment.value("HUB_API_TOKEN")
        configuration.readToken = readToken ?? Environment.value("HUB_READ_TOKEN")
        configuration.server.port = port ?? Environment.value("HUB_PORT").flatMap(Int.init) ?? 8080
        configuration.server.host = host ?? Environment.value("HUB_HOST") ?? "0.0.0.0"
        configuration.server.autoProvision = autoProvision || Environment.value("HUB_AUTO_PROVISION") == "1"
        if let batchRows { configuration.batchRows = max(1, batchRows) }
        if let flushMilliseconds { configuration.flushInterval = .milliseconds(max(1, flushMilliseconds)) }
        if let queueRows { configuration.queueCapacityRows = max(1, queueRows) }
        if let maxFrameBytes { configuration.server.maxFrameBytes = max(64, maxFrameBytes) }
        if let heartbeatSeconds { configuration.server.heartbeatSeconds = max(1, heartbeatSeconds) }

        let service = HubService(configuration: configuration, logger: logger) { hub in
            Banner.print(hub)
        }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

enum Banner {
    static func print(_ hub: Hub) {
        let configuration = hub.configuration
        let host = configuration.server.host == "0.0.0.0" ? "localhost" : configuration.server.host
        let lines = [
            "telemetry hub ready",
            "  listening    http://\(host):\(hub.port)  (devices: ws://\(host):\(hub.port)/devices/{id})",
            "  database     \(hub.database.description)",
            "  data folder  \(configuration.dataDirectory.standardizedFileURL.path)",
            "  api token    \(configuration.apiToken == nil ? hub.apiToken + "  (generated; stored in the data folder)" : "(from --api-token)")",
        ]
        write(lines)
    }

    /// Writes straight to the descriptor: stdout may be a pipe, where print() buffers.
    static func write(_ lines: [String]) {
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
