import ArgumentParser
import Foundation

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Load tools that print figures.", subcommands: [IngestBenchCommand.self, FanoutBenchCommand.self, CommandsBenchCommand.self, HistoryBenchCommand.self, TakeoverBenchCommand.self, IdleBenchCommand.self, ScaleBenchCommand.self])
}

struct IngestBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "D devices stream frames of R readings as fast as acks allow; prints committed readings/s, ack latency, CPU, and the ratios to two plain binary COPY ceilings measured in the same run (the hub's row layout, and the narrowest reading row).")

    @Option(name: .customShort("d"), help: "Simulated devices.") var devices = 100
    @Option(name: .customShort("r"), help: "Readings per frame.") var readings = 10
    @Option(name: .customShort("w"), help: "Unacked frames each device may have in flight.") var window = 64
    @Option(name: .customShort("t"), help: "Measured seconds (after 2 s of warm-up).") var seconds = 10
    @Option(help: "Target an already running hub (ws://host:port) started with --auto-provision, instead of starting one.")
    var url: String?
    @Option(name: .customLong("hub-args"), help: "Extra arguments for the hub the tool starts, e.g. \"--batch-rows 10000\".")
    var hubArguments: String = ""
    @Flag(name: .customLong("no-ceiling"), help: "Skip the plain-COPY ceiling measurement.") var noCeiling = false
    @Option(help: "Offered readings per second in total, paced (0: as fast as acks allow). A soak: --rate <half the ceiling> -t 600.")
    var rate = 0

    func run() async throws {
        let target: BenchTarget
        if let url {
            target = try BenchTarget(url: url)
        } else {
            print("starting a hub with its own embedded PostgreSQL…")
            target = try BenchTarget.startHub(extraArguments: hubArguments.split(separator: " ").map(String.init))
        }
        defer { target.stop() }

        let load = IngestLoad(
            devices: devices, readingsPerFrame: readings, window: window,
            framesPerSecondPerDevice: rate > 0 ? Double(rate) / Double(readings * devices) : nil)
        try await load.connect(host: target.host, port: target.port)
        let result = try await load.run(warmUp: .seconds(2), measure: .seconds(seconds), cpu: target.cpuProbe)
        await load.disconnect()

        var lines = [
            "ingest: D=\(devices) R=\(readings) window=\(window) T=\(seconds)s\(rate > 0 ? " offered=\(rate) readings/s" : "")",
            String(format: "  committed     %.0f readings/s  (%.0f frames/s)", result.readingsPerSecond, result.framesPerSecond),
            String(format: "  ack latency   p50 %.2f ms   p99 %.2f ms   max %.2f ms", result.p50Millis, result.p99Millis, result.maxMillis),
            "  cpu           hub \(result.hubCPU.map { String(format: "%.0f %%", $0) } ?? "n/a")   database \(result.databaseCPU.map { String(format: "%.0f %%", $0) } ?? "n/a")  (100 % = one core)",
        ]
        if let first = result.rssSamples.first, let last = result.rssSamples.last, let peak = result.rssSamples.max() {
            let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
            let quarters = [1, 2, 3].map { mib(result.rssSamples[result.rssSamples.count * $0 / 4]) }.joined(separator: " / ")
            lines.append("  hub rss       start \(mib(first))   max \(mib(peak))   end \(mib(last))  (\(result.rssSamples.count) samples, one per second; at 1/4, 1/2, 3/4: \(quarters))")
        }
        if !noCeiling, let databaseURL = target.databaseURL {
            let same = CopyCeiling(url: databaseURL, layout: .sameAsHub, readingsPerFrame: readings, devices: devices)
            let ceiling = try same.measure(rows: max(200_000, Int(result.readingsPerSecond) * min(seconds, 5)))
            let narrow = try CopyCeiling(url: databaseURL, layout: .narrow, readingsPerFrame: readings, devices: devices).measureNarrow()
            lines.append(String(format: "  ceiling       %.0f rows/s  (plain binary COPY of the hub's rows, one connection, batches of %d)", ceiling, same.batchRows))
            lines.append(String(format: "  narrow        %.0f rows/s  (binary COPY of (device_id, ts, metric, value), 10,000 per COPY, 2 M rows, median of 3)", narrow))
            lines.append(String(format: "  ratio         %.2f  (hub / same-layout ceiling)   %.2f  (hub / narrow ceiling)",
                result.readingsPerSecond / ceiling, result.readingsPerSecond / narrow))
        }
        print(lines.joined(separator: "\n"))
    }
}
