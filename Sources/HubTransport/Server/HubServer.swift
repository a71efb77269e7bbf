import HubIngest
import Logging
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import NIOPosix
import NIOSSL
import NIOWebSocket

/// The one-port server: device WebSockets, and HTTP for everything else.
public final class HubServer: Sendable {
    private let configuration: ServerConfiguration
    private let devices: DeviceEnvironment
    private let http: HTTPEnvironment
    private let live: LiveEnvironment
    private let commands: CommandCenter
    private let provision: @Sendable (String) async throws -> DeviceRecord
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let listener = NIOLockedValueBoxChannel()

    /// - Parameters:
    ///   - provision: registers an unknown device (only called with `autoProvision`).
    ///   - metricsText: answers `/metrics` (Prometheus text).
    ///   - readiness: answers `/readyz`.
    public init(
        configuration: ServerConfiguration, registry: DeviceRegistry, queue: IngestQueue, metrics: IngestMetrics,
        tokens: APITokens, history: TelemetryHistory, admin: DeviceAdmin, queries: TelemetryQueries,
        commandStore: CommandStore, logger: Logger,
        provision: @escaping @Sendable (String) async throws -> DeviceRecord,
        metricsText: @escaping @Sendable () -> String, readiness: @escaping @Sendable () async -> Readiness
    ) {
        self.configuration = configuration
        self.logger = logger
        self.provision = provision
        let fanout = LiveFanout()
        var commandSettings = CommandCenter.Settings()
        commandSettings.maxPendingPerDevice = configuration.maxPendingCommandsPerDevice
        commands = CommandCenter(store: commandStore, fanout: fanout, settings: commandSettings, logger: logger)
        live = LiveEnvironment(
            tokens: tokens, registry: registry, queue: queue, history: history, fanout: fanout, commands: commands,
            configuration: configuration, logger: logger)
        devices = DeviceEnvironment(
            registry: registry, queue: queue, configuration: configuration, logger: logger, metrics: metrics,
            fanout: live.fanout, commands: commands)
        http = HTTPEnvironment(
            registry: registry, tokens: tokens, metricsText: metricsText,
            router: RESTRouter(
                routes: DeviceRoutes(admin: admin, registry: registry).routes
                    + TelemetryRoutes(queries: queries, registry: registry).routes
                    + CommandRoutes(commands: commands, registry: registry).routes),
            maxBodyBytes: configuration.maxRequestBodyBytes, readiness: readiness,
            admission: Admission(configuration: configuration))
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    }

    /// Binds and starts accepting. - Returns: the bound port.
    public func start() async throws -> Int {
        let tls = try configuration.tls.map(Self.makeTLSContext)
        await commands.start()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: configuration.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try configurePipeline(channel)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        listener.set(channel)
        return channel.localAddress?.port ?? configuration.port
    }

    /// Stops accepting, and makes every device connection stop reading and hand over what
    /// it has read, so the writer can commit and ack it before `closeAll`.
    public func quiesce() async {
        try? await listener.take()?.close()
        for connection in devices.connections.all {
            try? await connection.quiesce().get()
        }
    }

    /// Closes every connection with `reason`, then stops the event loops.
    public func closeAll(_ reason: CloseReason) async {
        for connection in devices.connections.all { connection.close(reason) }
        for dashboard in live.dashboards.all { dashboard.close(reason) }
        // Let the close frames go out before the loops stop.
        try? await Task.sleep(for: .milliseconds(100))
        await commands.stop()
        try? await group.shutdownGracefully()
    }

    /// The server side of https and wss; unreadable files fail the start with their path.
    static func makeTLSContext(_ tls: ServerConfiguration.TLS) throws -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.keyPath, format: .pem)
            return try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        } catch {
            throw TLSSetupFailure(description: "cannot use --tls-cert \(tls.certificatePath) with --tls-key \(tls.keyPath): \(error)")
        }
    }

    struct TLSSetupFailure: Error, CustomStringConvertible {
        let description: String
    }

    private func configurePipeline(_ channel: Channel) throws {
        let httpHandler = HTTPHandler(environment: http)
        let boundHandler = NIOLoopBound(httpHandler, eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxFrameBytes,
            automaticErrorHandling: true,
            shouldUpgrade: { [self] channel, head in
                // A limit or an origin refuses first; the HTTP handler answers with it.
                if let refusal = admissionRefusal(head) {
                    boundHandler.value.refusal = refusal
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                return shouldUpgrade(channel: channel, head: head)
            },
            upgradePipelineHandler: { [self] channel, head in
                channel.eventLoop.makeCompletedFuture { try addHandlers(channel: channel, head: head) }
            })
        var headerLimits = NIOHTTPDecoderLimitConfiguration()
        headerLimits.maxHeaderListSize = configuration.maxHeaderBytes
        headerLimits.maxHeaderFieldSize = configuration.maxHeaderBytes
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                context.pipeline.syncOperations.removeHandler(boundHandler.value, promise: nil)
            }),
            withErrorHandling: true, withOutboundHeaderValidation: true, withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: headerLimits)
        try channel.pipeline.syncOperations.addHandler(httpHandler)
    }

    private func admissionRefusal(_ head: HTTPRequestHead) -> HTTPReply? {
        if LiveRequest.isLivePath(head.uri) {
            return http.admission.refusal(for: .dashboard, head: head, openConnections: live.dashboards.count)
        }
        guard RequestTarget.split(head.uri).path.hasPrefix(DeviceRequest.pathPrefix) else { return nil }
        return http.admission.refusal(for: .device, head: head, openConnections: devices.connections.count)
    }

    private func shouldUpgrade(channel: Channel, head: HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?> {
        if LiveRequest.isLivePath(head.uri) {
            let accepted = LiveRequest.access(head, tokens: live.tokens) != nil
            return channel.eventLoop.makeSucceededFuture(accepted ? HTTPHeaders() : nil)
        }
        do throws(DeviceRequest.Refusal) {
            let request = try DeviceRequest(head: head)
            switch try request.authenticate(devices.registry) {
            case .accepted:
                return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
            case .provision:
                let provision = self.provision
                let registry = devices.registry
                let logger = self.logger
                let id = request.deviceID
                return channel.eventLoop.makeFutureWithTask { () -> HTTPHeaders? in
                    do {
                        registry.upsert(try await provision(id))
                        logger.warning("auto-provisioned a device", metadata: ["device": "\(id)"])
                        return HTTPHeaders()
                    } catch {
                        logger.error("auto-provisioning failed", metadata: ["device": "\(id)", "error": "\(error)"])
                        return nil
                    }
                }
            case .unauthorized, .disabled:
                return channel.eventLoop.makeSucceededFuture(nil)
            }
        } catch {
            // Not a device path, or refused: the HTTP handler answers with the status.
            return channel.eventLoop.makeSucceededFuture(nil)
        }
    }

    private func addHandlers(channel: Channel, head: HTTPRequestHead) throws {
        let aggregator = NIOWebSocketFrameAggregator(
            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: configuration.maxFrameBytes)
        if LiveRequest.isLivePath(head.uri) {
            guard let access = LiveRequest.access(head, tokens: live.tokens) else { throw DeviceRequest.Refusal.unauthorized }
            try channel.pipeline.syncOperations.addHandlers([
                aggregator, DashboardHandler(access: access, environment: live, eventLoop: channel.eventLoop),
            ])
            return
        }
        let request = try DeviceRequest(head: head)
        guard let record = devices.registry.record(id: request.deviceID) else {
            throw DeviceRequest.Refusal.unauthorized
        }
        let handler = DeviceHandler(
            device: DeviceRecordRef(key: record.key, id: record.id), remote: Self.describe(channel.remoteAddress),
            environment: devices, eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandlers([aggregator, handler])
    }

    /// `host:port` of a peer, with an IPv4-mapped IPv6 prefix removed.
    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress else { return "unknown" }
        let host = ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : ip
        let port = address.port.map(String.init) ?? "0"
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Holds the listening channel until shutdown takes it.
final class NIOLockedValueBoxChannel: Sendable {
    private let box = NIOLockedValueBox<Channel?>(nil)
    func set(_ channel: Channel) { box.withLockedValue { $0 = channel } }
    func take() -> Channel? { box.withLockedValue { value in defer { value = nil }; return value } }
}
