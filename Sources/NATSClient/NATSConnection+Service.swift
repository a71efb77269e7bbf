import ServiceLifecycle

extension NATSConnection: Service {
    /// Connects in the background, waits for the graceful shutdown, then shuts down.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }
}
