import HubIngest
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle

/// What every connection shares, without sockets: the device and dashboard environments
/// over the parts the hub builds (`Sources/Hub/Hub.swift`), which also runs the fan-out's
/// command center and the request runner in its service group. `HubServer` puts the core
/// behind its port; the stateful fuzzer (`Sources/HubSessionFuzz`) and the channel tests drive it
/// through in-memory channels with a fake sink and a test clock.
public final class HubCore: Sendable {
    let devices: DeviceEnvironment
    let live: LiveEnvironment
    let commands: CommandCenter
    let runner: RequestRunner
    let clock: any HubClock
    let configuration: ServerConfiguration

    public init(
        configuration: ServerConfiguration, registry: DeviceRegistry, metricCatalog: MetricCatalog, queue: IngestQueue,
        metrics: IngestMetrics, tokens: APITokens, history: TelemetryHistory, fanout: LiveFanout, commands: CommandCenter,
        runner: RequestRunner, clock: any HubClock, logger: Logger, claims: (any DeviceClaims)? = nil
    ) {
        self.configuration = configuration
        self.clock = clock
        self.commands = commands
        self.runner = runner
        live = LiveEnvironment(
            tokens: tokens, registry: registry, queue: queue, history: history, fanout: fanout, commands: commands,
            runner: runner, clock: clock, configuration: configuration, logger: logger)
        devices = DeviceEnvironment(
            registry: registry, metricCatalog: metricCatalog, queue: queue, configuration: configuration, logger: logger,
            metrics: metrics, fanout: fanout, commands: commands, clock: clock, claims: claims)
    }

    /// Adds a dashboard's `/live` handlers to an upgraded (or in-memory) channel.
    public func addDashboard(to channel: Channel, access: APITokens.Access) throws {
        try channel.pipeline.syncOperations.addHandlers([
            aggregator(), DashboardHandler(access: access, environment: live, eventLoop: channel.eventLoop),
        ])
    }

    /// Adds a device's handlers to an upgraded (or in-memory) channel.
    public func addDevice(_ record: DeviceRecord, remote: String, to channel: Channel) throws {
        let handler = DeviceHandler(
            device: DeviceRecordRef(key: record.key, id: record.id), remote: remote, environment: devices, eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandlers([aggregator(), handler])
    }

    /// Creates a command as `POST /api/v1/devices/{id}/commands` would.
    public func createCommand(device: String, name: String, paramsJSON: String, ttlSeconds: Int?) async throws -> Command {
        try await commands.create(device: device, name: name, paramsJSON: paramsJSON, ttlSeconds: ttlSeconds)
    }

    private func aggregator() -> NIOWebSocketFrameAggregator {
        NIOWebSocketFrameAggregator(
            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: configuration.maxFrameBytes)
    }
}
