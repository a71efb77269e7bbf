import ArgumentParser
import Hub

@main
struct HubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "An IoT telemetry hub: devices stream over WebSocket into PostgreSQL.",
        subcommands: [ServeCommand.self, DevicesCommand.self, TailCommand.self, SendCommand.self, StatusCommand.self, DemoCommand.self, SimulateCommand.self, BenchCommand.self],
        defaultSubcommand: ServeCommand.self)

    /// The process's metrics backend goes in first, before any part makes a metric.
    static func main() async {
        HubMetrics.bootstrap()
        await main(nil)
    }
}
