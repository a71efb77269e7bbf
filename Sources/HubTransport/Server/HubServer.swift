import HubIngest
import Logging
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import NIOPosix
import NIOSSL
import NIOWebSocket
import ServiceLifecycle

/// The one-port server: device WebSockets, and HTTP for everything else.
///
/// As a service it binds, reports the port, and serves until the graceful shutdown. Then
/// it stops accepting, makes every device connection stop reading and hand over what it
/// read, waits for `drain` (the ingest writer commits it and acks), closes every socket
/// with 1001 and stops its event loops.
public final class HubServer: Service {
    private let configuration: ServerConfiguration
    private let core: HubCore
    private let http: HTTPEnvironment
    private let gate: RequestGate
    private let provision: @Sendable (String) async throws -> DeviceRecord
    private let logger: Logger
    private let listener = NIOLockedValueBoxChannel()
    private let drain: @Sendable () async -> Void
    private let bound: @Sendable (Int) -> Void

    /// - Parameters:
    ///   - provision: registers an unknown device (only called with `autoProvision`).
    ///   - metricsText: answers `/metrics` (Prometheus text).
    ///   - readiness: answers `/readyz`.
    ///   - readingsPerSecond: rows committed per second lately, for `/api/v1/summary`.
    ///   - drain: at shutdown, commits and acks what devices sent (the ingest writer's shutdown).
    ///   - bound: told the port once the server listens.
    public init(
        core: HubCore, tokens: APITokens, admin: DeviceAdmin, queries: TelemetryQueries, fleet: FleetQueries, logger: Logger,
        provision: @escaping @Sendable (String) async throws -> DeviceRecord,
        metricsText: @escaping @Sendable () -> String, readiness: @escaping @Sendable () async -> Readiness,
        readingsPerSecond: @escaping @Sendable () -> Double,
        drain: @escaping @Sendable () async -> Void, bound: @escaping @Sendable (Int) -> Void
    ) {
        let configuration = core.configuration
        let registry = core.devices.registry
        self.configuration = configuration
        self.logger = logger
        self.provision = provision
        self.core = core
        self.drain = drain
        self.bound = bound
        let (devices, live, commands) = (core.devices, core.live, core.commands)
        let deviceRoutes = DeviceRoutes(admin: admin, registry: registry, fanout: live.fanout)
        gate = RequestGate(
            registry: registry, tokens: tokens, admission: Admission(configuration: configuration, clock: core.clock),
            failures: AuthFailureLimiter(perSecond: configuration.authFailuresPerSecond),
            openDevices: { devices.connections.count }, openDashboards: { live.dashboards.count },
            maxBodyBytes: configuration.maxRequestBodyBytes, clock: core.clock)
        http = HTTPEnvironment(
            gate: gate, metricsText: metricsText,
            router: RESTRouter(
                routes: deviceRoutes.routes
                    + TelemetryRoutes(queries: queries, registry: registry).routes
                    + CommandRoutes(commands: commands, registry: registry).routes
                    + FleetRoutes(
                        queries: fleet, registry: registry, clock: core.clock, isOnline: deviceRoutes.isOnline,
                        readingsPerSecond: readingsPerSecond).routes),
            readiness: readiness, runner: core.runner)
    }

    /// Serves until the graceful shutdown, then closes as the type's summary says.
    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let port: Int
        do {
            port = try await start(on: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        bound(port)
        try? await gracefulShutdown()
        await quiesce()
        await drain()
        await closeAll(.shuttingDown, group: group)
    }

    /// Binds and starts accepting. - Returns: the bound port.
    private func start(on group: MultiThreadedEventLoopGroup) async throws -> Int {
        let tls = try configuration.tls.map(Self.makeTLSContext)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: configuration.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            // Each connection keeps its last receive buffer for the next read. Starting at
            // 256 bytes rather than NIO's 2,048, an idle device holds a small one; a busy
            // one's buffer grows on full reads (doubling, up to 64 KiB) as before.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65_536))
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 64 * 1024))
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WriteWatchdog(
                        timeout: .seconds(Int64(configuration.writeTimeoutSeconds)), maxBufferedBytes: configuration.maxOutboundBytes,
                        clock: core.clock))
                    if let tls {
                        try channel.pipeline.syncOperations.addHandlers([
                            NIOSSLServerHandler(context: tls),
                            TLSHandshakeTimeout(timeout: .seconds(Int64(configuration.tlsHandshakeTimeoutSeconds))),
                        ])
                    }
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
    private func quiesce() async {
        try? await listener.take()?.close()
        for connection in core.devices.connections.all {
            try? await connection.quiesce().get()
        }
    }

    /// Closes every connection with `reason`, each once its close frame is written, then
    /// stops the event loops. A peer whose close frame cannot be written within
    /// `closeGrace` is closed with the loops.
    private func closeAll(_ reason: CloseReason, group: MultiThreadedEventLoopGroup) async {
        let closing = core.devices.connections.all.map { $0.closed(reason) } + core.live.dashboards.all.map { $0.closed(reason) }
        let grace = configuration.closeGrace
        await withTaskGroup(of: Void.self) { waits in
            waits.addTask { for future in closing { try? await future.get() } }
            waits.addTask { try? await Task.sleep(for: grace) }
            await waits.next()
            waits.cancelAll()
            // Closes whatever is still open, so the wait for it ends too.
            try? await group.shutdownGracefully()
        }
    }

    /// The server side of https and wss; unreadable files fail the start with their path.
    static func makeTLSContext(_ tls: ServerConfiguration.TLS) throws -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.keyPath, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            // TLS 1.2 or newer, and in 1.2 only ECDHE key exchange with AEAD ciphers: forward
            // secret throughout (TLS 1.3's suites all are).
            configuration.minimumTLSVersion = .tlsv12
            configuration.cipherSuites = Self.forwardSecretCiphers
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupFailure(description: "cannot use --tls-cert \(tls.certificatePath) with --tls-key \(tls.keyPath): \(error)")
        }
    }

    static let forwardSecretCiphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    struct TLSSetupFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Builds a connection's HTTP pipeline, with the WebSocket upgrade (after TLS, if any):
    /// on accepted sockets, and in the channel tests.
    func configurePipeline(_ channel: Channel) throws {
        let timeouts = HTTPTimeouts(
            headerTimeout: .seconds(Int64(configuration.headerTimeoutSeconds)), idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)))
        let httpHandler = HTTPHandler(environment: http, timeouts: timeouts)
        let bound = NIOLoopBound((httpHandler, timeouts), eventLoop: channel.eventLoop)
        // The gate's decision on the request being upgraded, from `shouldUpgrade` to the
        // pipeline it builds (NIO's upgrader gives these two closures no other channel). A
        // refusal goes down the pipeline ahead of the request, to the HTTP handler.
        let admitted = NIOLoopBound(Box<RequestGate.Decision?>(nil), eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxFrameBytes,
            automaticErrorHandling: true,
            shouldUpgrade: { [self] channel, head in
                let request = HubRequest(head)
                // Other endpoints ignore `Upgrade`: the HTTP handler serves them.
                guard request.isWebSocket else { return channel.eventLoop.makeSucceededFuture(nil) }
                let decision = gate.decide(request, address: Self.host(channel.remoteAddress))
                switch decision {
                case .refused(let reply):
                    channel.pipeline.fireUserInboundEventTriggered(RequestRefused(reply: reply))
                    return channel.eventLoop.makeSucceededFuture(nil)
                case .provision(let id):
                    return provisioned(id, on: channel.eventLoop).map { record in
                        guard let record else {
                            channel.pipeline.fireUserInboundEventTriggered(RequestRefused(reply: .closing(
                                .error(.serviceUnavailable, code: "unavailable", "could not register the device; try again"))))
                            return nil
                        }
                        admitted.value.value = .device(record)
                        return HTTPHeaders()
                    }
                case .device, .dashboard, .api, .open:
                    admitted.value.value = decision
                    return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                }
            },
            upgradePipelineHandler: { [self] channel, _ in
                channel.eventLoop.makeCompletedFuture { try addHandlers(channel: channel, decision: admitted.value.value) }
            })
        var headerLimits = NIOHTTPDecoderLimitConfiguration()
        headerLimits.maxHeaderListSize = configuration.maxHeaderBytes
        headerLimits.maxHeaderFieldSize = configuration.maxHeaderBytes
        try channel.pipeline.syncOperations.addHandler(timeouts)
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                context.pipeline.syncOperations.removeHandler(bound.value.0, promise: nil)
                context.pipeline.syncOperations.removeHandler(bound.value.1, promise: nil)
            }),
            withErrorHandling: true, withOutboundHeaderValidation: true, withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: headerLimits)
        try channel.pipeline.syncOperations.addHandler(httpHandler)
    }

    /// Registers an unknown device under `--auto-provision`. - Returns: its record, or `nil`.
    private func provisioned(_ id: String, on loop: EventLoop) -> EventLoopFuture<DeviceRecord?> {
        let (provision, registry, logger) = (self.provision, core.devices.registry, self.logger)
        let promise = loop.makePromise(of: DeviceRecord?.self)
        let submitted = core.runner.submit {
            do {
                let record = try await provision(id)
                registry.upsert(record)
                logger.warning("auto-provisioned a device", metadata: ["device": "\(id)"])
                promise.succeed(registry.record(id: id) ?? record)
            } catch {
                logger.error("auto-provisioning failed", metadata: ["device": "\(id)", "error": "\(error)"])
                promise.succeed(nil)
            }
        }
        if !submitted { promise.succeed(nil) }
        return promise.futureResult
    }

    private func addHandlers(channel: Channel, decision: RequestGate.Decision?) throws {
        switch decision {
        case .dashboard(let access)?:
            try core.addDashboard(to: channel, access: access)
        case .device(let record)?:
            try core.addDevice(record, remote: Self.describe(channel.remoteAddress), to: channel)
        default:
            throw DeviceRequest.Refusal.unauthorized
        }
    }

    /// The host of a peer, with an IPv4-mapped IPv6 prefix removed: the key of the
    /// failed-authentication budget.
    static func host(_ address: SocketAddress?) -> String {
        guard let ip = address?.ipAddress else { return "unknown" }
        return ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : ip
    }

    /// `host:port` of a peer, with an IPv4-mapped IPv6 prefix removed.
    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress else { return "unknown" }
        let host = ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : ip
        let port = address.port.map(String.init) ?? "0"
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A mutable cell shared by the closures of one connection's pipeline, on its loop.
final class Box<Value> {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Holds the listening channel until shutdown takes it.
final class NIOLockedValueBoxChannel: Sendable {
    private let box = NIOLockedValueBox<Channel?>(nil)
    func set(_ channel: Channel) { box.withLockedValue { $0 = channel } }
    func take() -> Channel? { box.withLockedValue { value in defer { value = nil }; return value } }
}
