import HubIngest
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle

/// What every connection shares, without sockets: the fan-out, the command center, and
/// the device and dashboard environments. Its `services` must run (in the hub's service
/// group) for commands, REST calls and replays to move. `HubServer` puts it behind its port; the
/// stateful fuzzer (`Sources/HubFuzz`) drives it through in-memory channels with a fake
/// sink and a test clock.
public final class HubCore: Sendable {
    let devices: DeviceEnvironment
    let live: LiveEnvironment
    let commands: CommandCenter
    let runner = RequestRunner()
    let clock: any HubClock
    let configuration: ServerConfiguration

    public init(
        configuration: ServerConfiguration, registry: DeviceRegistry, metricCatalog: MetricCatalog, queue: IngestQueue,
        metrics: IngestMetrics, tokens: APITokens, history: TelemetryHistory, commandStore: CommandStore,
        clock: any HubClock = SystemClock(), logger: Logger
    ) {
        self.configuration = configuration
        self.clock = clock
        let fanout = LiveFanout()
        var commandSettings = CommandCenter.Settings()
        commandSettings.maxPendingPerDevice = configuration.maxPendingCommandsPerDevice
        commandSettings.maxParamsBytes = configuration.maxJSONBytes
        commands = CommandCenter(store: commandStore, fanout: fanout, settings: commandSettings, clock: clock, logger: logger)
        live = LiveEnvironment(
            tokens: tokens, registry: registry, queue: queue, history: history, fanout: fanout, commands: commands,
            runner: runner, clock: clock, configuration: configuration, logger: logger)
        devices = DeviceEnvironment(
            registry: registry, metricCatalog: metricCatalog, queue: queue, configuration: configuration, logger: logger,
            metrics: metrics, fanout: fanout, commands: commands, clock: clock)
    }

    /// The core's services, in start order, to run in the service group before the
    /// server: the request runner, then the command center.
    public var services: [any Service] { [runner, commands] }

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
