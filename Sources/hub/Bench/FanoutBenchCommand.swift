import ArgumentParser
import Foundation

struct FanoutBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "P devices publish while S dashboards subscribe to all of them; prints deliveries/s, device-to-dashboard latency, and the hub's CPU and RSS.")

    @Option(name: .customShort("p"), help: "Publishing devices.") var publishers = 10
    @Option(name: .customShort("s"), help: "Dashboards, each subscribed to every device.") var subscribers = 100
    @Option(help: "Offered deliveries per second in total (frames/s × S); 0 saturates.") var rate = 0
    @Option(name: .customShort("t"), help: "Measured seconds (after 2 s of warm-up).") var seconds = 10
    @Option(help: "Target an already running hub (ws://host:port) started with --auto-provision and --api-token.")
    var url: String?
    @Option(name: .customLong("api-token"), help: "API token for --url.") var apiToken: String?
    @Option(name: .customLong("devices-url"), help: "With --url: connect the devices to this other node of a cluster (ws://host:port, --auto-provision), so every delivery crosses nodes.")
    var devicesURL: String?
    @Option(name: .customLong("client-threads"), help: "Event-loop threads of the tool's own clients.") var clientThreads = 2
    @Option(name: .customLong("hub-binary"), help: "Start this hub executable instead of this one (to compare builds in one hour).")
    var hubBinary: String?

    func run() async throws {
        let target: BenchTarget
        let token: String
        if let url {
            target = try BenchTarget(url: url)
            guard let apiToken else { throw ValidationError("--url needs --api-token") }
            token = apiToken
        } else {
            print("starting a hub with its own embedded PostgreSQL…")
            token = "bench-\(UUID().uuidString)"
            target = try BenchTarget.startHub(extraArguments: ["--api-token", token], executable: hubBinary)
        }
        defer { target.stop() }
        let load = FanoutLoad(publishers: publishers, subscribers: subscribers, offeredDeliveries: rate, clientThreads: clientThreads)
        let deviceNode = try devicesURL.map { try BenchTarget(url: $0) }
        try await load.connect(
            host: target.host, port: target.port, token: token, devices: deviceNode.map { ($0.host, $0.port) })
        let result = try await load.run(warmUp: .seconds(2), measure: .seconds(seconds), cpu: target.cpuProbe)
        await load.disconnect()
        print([
            "fanout: P=\(publishers) S=\(subscribers) offered=\(rate == 0 ? "saturating" : "\(rate) deliveries/s") T=\(seconds)s"
                + (devicesURL == nil ? "" : "  (devices on another node)"),
            String(format: "  delivered     %.0f deliveries/s  (%.0f frames/s published)", result.deliveriesPerSecond, result.framesPerSecond),
            String(format: "  latency       p50 %.2f ms   p99 %.2f ms   max %.2f ms  (device send to dashboard receive)", result.p50Millis, result.p99Millis, result.maxMillis),
            String(format: "  device acks   p50 %.2f ms   p99 %.2f ms  (frame sent to its ack, after the commit)", result.ackP50Millis, result.ackP99Millis),
            "  conflated     \(result.laggedMessages) lagged messages, \(result.conflatedReadings) readings conflated away",
            "  hub           cpu \(result.hubCPU.map { String(format: "%.0f %%", $0) } ?? "n/a")   rss \(result.hubRSS.map { "\($0 / 1_048_576) MiB" } ?? "n/a")"
                + "   peak rss \(result.hubPeakRSS.map { "\($0 / 1_048_576) MiB" } ?? "n/a")",
        ].joined(separator: "\n"))
    }
}
