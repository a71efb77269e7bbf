import Logging
import ServiceLifecycle

/// Runs a hub under swift-service-lifecycle: starts it, waits for SIGINT/SIGTERM (graceful
/// shutdown), then stops it in order.
public struct HubService: Service {
    private let configuration: HubConfiguration
    private let logger: Logger
    private let onStart: @Sendable (Hub) -> Void

    public init(configuration: HubConfiguration, logger: Logger, onStart: @escaping @Sendable (Hub) -> Void) {
        self.configuration = configuration
        self.logger = logger
        self.onStart = onStart
    }

    public func run() async throws {
        let hub = try await Hub.start(configuration, logger: logger)
        onStart(hub)
        try? await gracefulShutdown()
        await hub.stop()
    }
}
