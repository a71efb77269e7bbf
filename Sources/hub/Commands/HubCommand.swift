import ArgumentParser

@main
struct HubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "An IoT telemetry hub: devices stream over WebSocket into PostgreSQL.",
        subcommands: [ServeCommand.self, DevicesCommand.self, DemoCommand.self, SimulateCommand.self, BenchCommand.self],
        defaultSubcommand: ServeCommand.self)
}
