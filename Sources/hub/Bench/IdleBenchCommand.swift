import ArgumentParser
import Foundation
import HubClient
import NIOCore
import NIOPosix

/// `hub bench idle`: what an idle device costs the hub in memory. N devices connect, get
/// their welcome and stay idle; the hub's resident set size is sampled before and after,
/// and the delta is divided by N.
struct IdleBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle",
        abstract: "N devices connect and stay idle; prints the hub's RSS before and after, and the delta per device.")

    @Option(name: .customShort("n"), help: "Devices that connect and stay idle.") var devices = 10_000
    @Option(help: "Devices connecting at once.") var concurrency = 100
    @Option(name: .customLong("hub-args"), help: "Extra arguments for the hub the tool starts.")
    var hubArguments: String = ""

    func run() async throws {
        print("starting a hub with its own embedded PostgreSQL…")
        // Past the connect-rate and connection limits the defaults would set for N devices.
        let target = try BenchTarget.startHub(
            extraArguments: ["--connect-rate", "1000000", "--max-devices", String(max(50_000, devices))]
                + hubArguments.split(separator: " ").map(String.init))
        defer { target.stop() }
        guard let probe = target.cpuProbe else { throw ValidationError("the hub's process is not known") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        try await Task.sleep(for: .seconds(2))
        let before = try await Self.settledRSS(probe)

        let run = UUID().uuidString.prefix(6)
        var clients: [DeviceClient] = []
        clients.reserveCapacity(devices)
        let started = ContinuousClock.now
        var next = 0
        while next < devices {
            let wave = next..<min(devices, next + concurrency)
            clients += try await withThrowingTaskGroup(of: DeviceClient.self) { tasks in
                for index in wave {
                    tasks.addTask {
                        try await DeviceClient.connect(host: target.host, port: target.port, deviceID: "idle-\(run)-\(index)", token: nil, group: group)
                    }
                }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
            next = wave.upperBound
        }
        let connectSeconds = (ContinuousClock.now - started).seconds
        try await Task.sleep(for: .seconds(3))
        let after = try await Self.settledRSS(probe)
        for client in clients { await client.close() }
        try? await group.shutdownGracefully()

        let perDevice = Double(after - before) / Double(devices)
        print([
            "idle: N=\(devices) devices connected in \(String(format: "%.1f", connectSeconds)) s, each with its welcome, then idle",
            String(format: "  hub rss       before %.1f MiB   after %.1f MiB  (medians of 5 samples, 0.5 s apart)", Double(before) / 1_048_576, Double(after) / 1_048_576),
            String(format: "  per device    %.2f KB  (RSS delta / N, 1 KB = 1,000 bytes)", perDevice / 1000),
        ].joined(separator: "\n"))
    }

    /// The median of 5 samples of the hub's RSS, 0.5 s apart.
    private static func settledRSS(_ probe: CPUProbe) async throws -> Int {
        var samples: [Int] = []
        for _ in 0..<5 {
            if let rss = probe.hubRSS() { samples.append(rss) }
            try await Task.sleep(for: .milliseconds(500))
        }
        guard !samples.isEmpty else { throw ValidationError("could not read the hub's RSS") }
        return samples.sorted()[samples.count / 2]
    }
}
