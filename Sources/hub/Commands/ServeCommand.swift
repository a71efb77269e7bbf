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

    @Option(name: .customLong("flush-ms"), help: "…or when its oldest reading has waited this many milliseconds (default 20; 0: as soon as the writer is idle).")
    var flushMilliseconds: Int?

    @Option(name: .customLong("ingest-writers"), help: "Ingest writer threads, each with its own database connection; a device always goes to the same one (default 2, at most 16).")
    var ingestWriters: Int?

    @Option(name: .customLong("queue-rows"), help: "Ingest queue bound in readings; over it the hub stops reading device sockets (default 200000).")
    var queueRows: Int?

    @Option(name: .customLong("max-frame-bytes"), help: "Largest device message; larger closes with 1009 (default 65536).")
    var maxFrameBytes: Int?

    @Option(name: .customLong("heartbeat"), help: "Seconds between pings; silent peers are closed after twice this (default 30).")
    var heartbeatSeconds: Int?

    @Option(name: .customLong("max-devices"), help: "Device connections at once; more get 503 (default 50000).")
    var maxDevices: Int?

    @Option(name: .customLong("max-dashboards"), help: "Dashboard connections at once; more get 503 (default 1000).")
    var maxDashboards: Int?

    @Option(name: .customLong("connect-rate"), help: "WebSocket upgrades accepted per second; more get 503 with Retry-After (default 2000).")
    var connectRate: Int?

    @Option(name: .customLong("device-frame-rate"), help: "Frames per second per device; above it the hub stops reading that socket until it may again (default 1000).")
    var deviceFrameRate: Int?

    @Option(name: .customLong("bad-frames-per-minute"), help: "Bad frames a device may send within 60 s; one more closes with 1008 (default 100).")
    var badFramesPerMinute: Int?

    @Option(name: .customLong("max-subscriptions"), help: "Subscriptions per dashboard connection (default 100).")
    var maxSubscriptions: Int?

    @Option(name: .customLong("max-json-bytes"), help: "Largest JSON text message from a device or dashboard; larger gets an error (default 16384).")
    var maxJSONBytes: Int?

    @Option(name: .customLong("max-header-bytes"), help: "HTTP request headers, all together; larger gets 431 (default 16384).")
    var maxHeaderBytes: Int?

    @Option(name: .customLong("max-body-bytes"), help: "REST request body; larger gets 413 (default 1048576).")
    var maxBodyBytes: Int?

    @Option(name: .customLong("allowed-origin"), help: "A browser origin allowed on /live, the REST API and the page (repeat it; \"*\" allows any; default: the hub's own host) (env HUB_ALLOWED_ORIGINS, comma-separated).")
    var allowedOrigins: [String] = []

    @Option(name: .customLong("partition-hours"), help: "Hours of readings per time partition (default 24).")
    var partitionHours: Int?

    @Option(name: .customLong("retention-days"), help: "Drop readings older than this many days, a whole partition at a time (default: keep everything).")
    var retentionDays: Int?

    @Option(name: .customLong("rollup-retention-days"), help: "Delete minute and hour rollups older than this many days (default: keep them).")
    var rollupRetentionDays: Int?

    @Option(name: .customLong("rejected-retention-days"), help: "Delete rejected frames after this many days (default 30).")
    var rejectedRetentionDays: Int?

    @Option(name: .customLong("command-retention-days"), help: "Delete final commands this many days after their last change (default 30).")
    var commandRetentionDays: Int?

    @Option(name: .customLong("max-metrics-per-device"), help: "Distinct metric names one device may report; a frame adding one more is rejected with too_many_metrics (default 1000).")
    var maxMetricsPerDevice: Int?

    @Option(name: .customLong("max-metrics"), help: "Distinct metric names the hub holds in all; past it frames adding one are rejected with too_many_metrics (default 1000000).")
    var maxMetrics: Int?

    @Option(name: .customLong("max-patterns"), help: "Entries in one subscription's devices, and in its metrics; more is bad_subscription (default 100).")
    var maxPatterns: Int?

    @Option(name: .customLong("write-timeout"), help: "Seconds a peer may take no byte of what the hub has for it before it is closed (default 30).")
    var writeTimeout: Int?

    @Option(name: .customLong("max-outbound-bytes"), help: "Bytes waiting for one connection's peer; past it the connection is closed (default 8388608).")
    var maxOutboundBytes: Int?

    @Option(name: .customLong("header-timeout"), help: "Seconds from a request's first byte to the end of its headers (default 10).")
    var headerTimeout: Int?

    @Option(name: .customLong("idle-timeout"), help: "Seconds an HTTP connection may stay without a request (default 60).")
    var idleTimeout: Int?

    @Option(name: .customLong("auth-failures-per-second"), help: "Failed authentications per second per source address; past it 429 with Retry-After (default 20).")
    var authFailuresPerSecond: Int?

    @Option(name: .customLong("statement-timeout"), help: "Seconds one REST or replay statement may run; past it 503 timeout or replay_failed (default 10).")
    var statementTimeout: Int?

    @Option(name: .customLong("tls-handshake-timeout"), help: "Seconds a TLS handshake may take (default 10).")
    var tlsHandshakeTimeout: Int?

    @Option(name: .customLong("maintenance-interval"), help: "Seconds between partition maintenance rounds (default 60).")
    var maintenanceInterval: Int?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve https and wss (env HUB_TLS_CERT).")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert (env HUB_TLS_KEY).")
    var tlsKey: String?

    @Option(name: .customLong("cluster"), help: "Cluster mode: the NATS server between the nodes, nats://host:port; needs --database-url (env HUB_CLUSTER).")
    var cluster: String?

    @Option(name: .customLong("node-id"), help: "This node's name in the cluster: A-Z, a-z, 0-9, - and _, up to 64 (env HUB_NODE_ID; default: host name and port).")
    var nodeID: String?

    @Option(name: .customLong("drain-timeout-ms"), help: "How long a connect waits for the device's previous node to hand it over (default 1000).")
    var drainTimeoutMilliseconds: Int?

    func validate() throws {
        for (name, value) in [
            ("--max-devices", maxDevices), ("--max-dashboards", maxDashboards), ("--connect-rate", connectRate),
            ("--device-frame-rate", deviceFrameRate), ("--bad-frames-per-minute", badFramesPerMinute),
            ("--max-subscriptions", maxSubscriptions), ("--max-json-bytes", maxJSONBytes),
            ("--max-header-bytes", maxHeaderBytes), ("--max-body-bytes", maxBodyBytes),
            ("--partition-hours", partitionHours), ("--retention-days", retentionDays),
            ("--rejected-retention-days", rejectedRetentionDays), ("--command-retention-days", commandRetentionDays),
            ("--rollup-retention-days", rollupRetentionDays), ("--max-metrics-per-device", maxMetricsPerDevice),
            ("--max-metrics", maxMetrics), ("--max-patterns", maxPatterns), ("--write-timeout", writeTimeout),
            ("--max-outbound-bytes", maxOutboundBytes), ("--header-timeout", headerTimeout), ("--idle-timeout", idleTimeout),
            ("--auth-failures-per-second", authFailuresPerSecond), ("--statement-timeout", statementTimeout),
            ("--tls-handshake-timeout", tlsHandshakeTimeout), ("--maintenance-interval", maintenanceInterval),
            ("--drain-timeout-ms", drainTimeoutMilliseconds), ("--ingest-writers", ingestWriters),
        ] {
            if let value, value < 1 { throw ValidationError("\(name) must be at least 1") }
        }
        if let flushMilliseconds, flushMilliseconds < 0 { throw ValidationError("--flush-ms must be at least 0") }
        // Durations become nanoseconds, spans seconds, in 64 bits: these bounds keep them in range.
        for (name, value, limit) in [
            ("--heartbeat", heartbeatSeconds, 86_400), ("--write-timeout", writeTimeout, 86_400), ("--header-timeout", headerTimeout, 86_400),
            ("--idle-timeout", idleTimeout, 86_400), ("--statement-timeout", statementTimeout, 86_400),
            ("--tls-handshake-timeout", tlsHandshakeTimeout, 86_400), ("--maintenance-interval", maintenanceInterval, 86_400),
            ("--flush-ms", flushMilliseconds, 60_000), ("--ingest-writers", ingestWriters, 16), ("--max-frame-bytes", maxFrameBytes, 16 << 20),
            ("--partition-hours", partitionHours, 87_600), ("--retention-days", retentionDays, 3_650_000),
            ("--rollup-retention-days", rollupRetentionDays, 3_650_000), ("--rejected-retention-days", rejectedRetentionDays, 3_650_000),
            ("--command-retention-days", commandRetentionDays, 3_650_000), ("--drain-timeout-ms", drainTimeoutMilliseconds, 60_000),
        ] {
            if let value, value > limit { throw ValidationError("\(name) must be at most \(limit)") }
        }
                for (flag, token) in [("--api-token", apiToken ?? Environment.raw("HUB_API_TOKEN")), ("--read-token", readToken ?? Environment.raw("HUB_READ_TOKEN"))] {
            if let token, token.count < 16 {
                throw ValidationError("\(flag) must be at least 16 characters\(token.isEmpty ? " (it is empty)" : "")")
            }
        }
        if let nodeID = nodeID ?? Environment.value("HUB_NODE_ID"), !ClusterConfiguration.isValidNodeID(nodeID) {
            throw ValidationError("--node-id must be 1 to 64 of A-Z, a-z, 0-9, - and _")
        }
        if cluster ?? Environment.value("HUB_CLUSTER") != nil, database.resolvedDatabaseURL == nil {
            throw ValidationError("--cluster needs --database-url: the nodes share one PostgreSQL")
        }
        if (tlsCertificate ?? Environment.value("HUB_TLS_CERT") == nil) != (tlsKey ?? Environment.value("HUB_TLS_KEY") == nil) {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
    }

    /// The host name and port (or, on port 0, the process id): unique among the nodes of one machine.
    static func defaultNodeID(port: Int) -> String {
        let host = String(ProcessInfo.processInfo.hostName.unicodeScalars.map {
            ClusterConfiguration.isValidNodeID(String($0)) ? Character($0) : "-"
        }.prefix(40))
        return "\(host.isEmpty ? "hub" : host)-\(port == 0 ? "p\(ProcessInfo.processInfo.processIdentifier)" : String(port))"
    }

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
        if let flushMilliseconds { configuration.flushInterval = .milliseconds(flushMilliseconds) }
        if let ingestWriters { configuration.ingestWriters = ingestWriters }
        if let queueRows { configuration.queueCapacityRows = max(1, queueRows) }
        if let maxFrameBytes { configuration.server.maxFrameBytes = max(64, maxFrameBytes) }
        if let heartbeatSeconds { configuration.server.heartbeatSeconds = max(1, heartbeatSeconds) }
        if let maxDevices { configuration.server.maxDeviceConnections = maxDevices }
        if let maxDashboards { configuration.server.maxDashboardConnections = maxDashboards }
        if let connectRate { configuration.server.connectsPerSecond = connectRate }
        if let deviceFrameRate { configuration.server.maxFramesPerSecondPerDevice = deviceFrameRate }
        if let badFramesPerMinute { configuration.server.streamLimits.maxBadFrames = badFramesPerMinute }
        if let maxSubscriptions { configuration.server.maxSubscriptionsPerDashboard = maxSubscriptions }
        if let maxJSONBytes { configuration.server.maxJSONBytes = maxJSONBytes }
        if let maxHeaderBytes { configuration.server.maxHeaderBytes = maxHeaderBytes }
        if let maxBodyBytes { configuration.server.maxRequestBodyBytes = maxBodyBytes }
        if let partitionHours { configuration.storage.spanSeconds = Int64(partitionHours) * 3600 }
        configuration.storage.retentionDays = retentionDays
        configuration.storage.rollupRetentionDays = rollupRetentionDays
        if let rejectedRetentionDays { configuration.storage.rejectedRetentionDays = rejectedRetentionDays }
        if let commandRetentionDays { configuration.storage.commandRetentionDays = commandRetentionDays }
        if let maxMetricsPerDevice { configuration.metricLimits.perDevice = maxMetricsPerDevice }
        if let maxMetrics { configuration.metricLimits.total = maxMetrics }
        if let maxPatterns { configuration.server.maxPatterns = maxPatterns }
        if let writeTimeout { configuration.server.writeTimeoutSeconds = writeTimeout }
        if let maxOutboundBytes { configuration.server.maxOutboundBytes = maxOutboundBytes }
        if let headerTimeout { configuration.server.headerTimeoutSeconds = headerTimeout }
        if let idleTimeout { configuration.server.idleTimeoutSeconds = idleTimeout }
        if let authFailuresPerSecond { configuration.server.authFailuresPerSecond = authFailuresPerSecond }
        if let statementTimeout { configuration.statementTimeout = .seconds(statementTimeout) }
        if let tlsHandshakeTimeout { configuration.server.tlsHandshakeTimeoutSeconds = tlsHandshakeTimeout }
        if let maintenanceInterval { configuration.storage.interval = .seconds(maintenanceInterval) }
        if let nats = cluster ?? Environment.value("HUB_CLUSTER") {
            var cluster = ClusterConfiguration(
                natsURL: nats, nodeID: nodeID ?? Environment.value("HUB_NODE_ID") ?? Self.defaultNodeID(port: configuration.server.port))
            if let drainTimeoutMilliseconds { cluster.drainTimeout = .milliseconds(drainTimeoutMilliseconds) }
            configuration.cluster = cluster
        }
        configuration.server.allowedOrigins = allowedOrigins.isEmpty
            ? (Environment.value("HUB_ALLOWED_ORIGINS")?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? [])
            : allowedOrigins
        if let certificate = tlsCertificate ?? Environment.value("HUB_TLS_CERT"), let key = tlsKey ?? Environment.value("HUB_TLS_KEY") {
            configuration.server.tls = .init(certificatePath: certificate, keyPath: key)
        }

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
        let secure = configuration.server.tls != nil ? "s" : ""
        let lines = [
            "telemetry hub ready",
            "  listening    http\(secure)://\(host):\(hub.port)  (devices: ws\(secure)://\(host):\(hub.port)/devices/{id})",
            "  database     \(hub.database.description)",
            "  data folder  \(configuration.dataDirectory.standardizedFileURL.path)",
            "  api token    \(configuration.apiToken == nil ? hub.apiToken + "  (generated; stored in the data folder)" : "(from --api-token)")",
        ] + (configuration.cluster.map { ["  cluster      node \($0.nodeID) via \($0.natsURL)"] } ?? [])
        write(lines)
    }

    /// Writes straight to the descriptor: stdout may be a pipe, where print() buffers.
    static func write(_ lines: [String]) {
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
