import ArgumentParser
import Foundation

/// `hub bench scale`: how cost grows with the number of devices at a fixed offered rate of
/// readings, and with the number of dashboards at a fixed offered rate of deliveries. Each
/// point runs against a fresh hub, so one point's rows, sessions and subscriptions never
/// weigh on the next.
struct ScaleBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "How cost grows: committed readings/s, ack latency and CPU for D devices at a fixed offered rate, and deliveries/s, latency and CPU for N dashboards at a fixed offered rate; prints a table per series and writes an SVG plot.",
        discussion: """
            Each point starts a fresh hub with its own embedded PostgreSQL (with --connect-rate 1000000 --max-devices 50000 --max-dashboards 5000, then --hub-args), measures for -t seconds after 2 s of warm-up, and stops the hub.

            devices: D devices send frames of R readings, each keeping at most 64 unacked frames in flight, paced so that together they offer --rate readings/s: each device sends rate / (R × D) frames/s. Latency is a frame's send to its ack.

            dashboards: 10 devices publish frames of one reading and N dashboards subscribe to all of them. The devices publish deliveries / N frames/s in total, so the offered deliveries/s stays the same while each dashboard's share shrinks as N grows. Latency is a device's send to a dashboard's receive.

            A device sending above the hub's --device-frame-rate (default 1000 frames/s) is throttled by the hub; the tool says so before it starts. CPU is percent of one core over the measured seconds.
            """)

    enum Series: String, ExpressibleByArgument, CaseIterable {
        case devices, dashboards
    }

    /// A comma-separated list of counts, e.g. `100,1000,10000`.
    struct Counts: ExpressibleByArgument {
        var values: [Int]

        init(_ values: [Int]) { self.values = values }

        init?(argument: String) {
            let values = argument.split(separator: ",", omittingEmptySubsequences: false)
                .map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, !values.contains(nil) else { return nil }
            self.values = values.compactMap { $0 }
        }

        var defaultValueDescription: String { values.map(String.init).joined(separator: ",") }
    }

    /// One measured point of a series.
    struct Point {
        var count: Int
        var throughput: Double
        var p50Millis: Double
        var p99Millis: Double
        var hubCPU: Double?
        var databaseCPU: Double?
    }

    @Option(help: "Device counts D of the devices series, comma-separated, each 1…50,000 (the hub's --max-devices).")
    var devices = Counts([100, 1000, 10_000])
    @Option(help: "Dashboard counts N of the dashboards series, comma-separated, each 1…5,000 (the hub's --max-dashboards).")
    var dashboards = Counts([10, 100, 1000])
    @Option(name: .customShort("r"), help: "Readings per frame in the devices series, 1…1,000 (the hub's default --max-metrics-per-device).")
    var readings = 10
    @Option(help: "Offered readings per second in total in the devices series, paced; at least 1.") var rate = 50_000
    @Option(help: "Offered deliveries per second in total in the dashboards series (published frames/s × N); at least 1.")
    var deliveries = 50_000
    @Option(name: .customShort("t"), help: "Measured seconds per point (after 2 s of warm-up), 1…3,600.") var seconds = 10
    @Option(help: "Run one series only.") var only: Series?
    @Option(help: "Where to write the SVG plot (960 × 360).") var svg = "scale.svg"
    @Option(name: .customLong("hub-args"), help: "Extra arguments for each hub the tool starts, after its own (so they win), e.g. \"--batch-rows 10000\".")
    var hubArguments: String = ""
    @Option(name: .customLong("client-threads"), help: "Event-loop threads of the tool's own clients in the dashboards series, 1…64.")
    var clientThreads = 2

    /// The dashboards series' publishing devices.
    static let publishers = 10
    /// Unacked frames each device of the devices series may have in flight.
    static let window = 64
    static let warmUp = Duration.seconds(2)
    /// Past the connect-rate and connection limits the defaults set, so the largest points connect.
    static let hubLimits = ["--connect-rate", "1000000", "--max-devices", "50000", "--max-dashboards", "5000"]
    /// The hub's default --device-frame-rate: a device sending faster is throttled.
    static let deviceFrameRate = 1000.0

    func validate() throws {
        for (name, counts, limit) in [("--devices", devices, 50_000), ("--dashboards", dashboards, 5000)] {
            guard counts.values.allSatisfy({ (1...limit).contains($0) }) else {
                throw ValidationError("\(name) must be counts from 1 to \(limit), comma-separated")
            }
        }
        guard (1...1000).contains(readings) else { throw ValidationError("-r must be from 1 to 1000") }
        guard rate >= 1 else { throw ValidationError("--rate must be at least 1") }
        guard deliveries >= 1 else { throw ValidationError("--deliveries must be at least 1") }
        guard (1...3600).contains(seconds) else { throw ValidationError("-t must be from 1 to 3600") }
        guard (1...64).contains(clientThreads) else { throw ValidationError("--client-threads must be from 1 to 64") }
        guard !svg.isEmpty else { throw ValidationError("--svg must name a file") }
    }

    func run() async throws {
        var panels: [SVGPlot.Panel] = []
        if only != .dashboards {
            warnIfThrottled(framesPerSecond: Double(rate) / Double(readings * devices.values.min()!), what: "device")
            var points: [Point] = []
            for count in devices.values {
                print("devices D=\(count): starting a hub with its own embedded PostgreSQL…")
                points.append(try await measureDevices(count))
            }
            print("devices: R=\(readings) window=\(Self.window) offered=\(rate) readings/s in total, paced; T=\(seconds)s after 2 s of warm-up; a fresh hub per point")
            print(Self.table(["D", "offered/s", "committed readings/s"], offered: rate, points))
            panels.append(SVGPlot.Panel(
                title: "devices: \(rate) readings/s offered, R=\(readings)", xLabel: "devices D (log scale)",
                left: SVGPlot.Series(name: "committed readings/s", axisLabel: "readings/s", points: points.map { SVGPlot.Point(x: Double($0.count), y: $0.throughput) }),
                right: SVGPlot.Series(name: "ack p99 ms", axisLabel: "ack p99 ms", points: points.map { SVGPlot.Point(x: Double($0.count), y: $0.p99Millis) })))
        }
        if only != .devices {
            warnIfThrottled(framesPerSecond: Double(deliveries) / Double(dashboards.values.min()! * Self.publishers), what: "publishing device")
            var points: [Point] = []
            for count in dashboards.values {
                print("dashboards N=\(count): starting a hub with its own embedded PostgreSQL…")
                points.append(try await measureDashboards(count))
            }
            print("dashboards: P=\(Self.publishers) offered=\(deliveries) deliveries/s in total (\(deliveries) / N frames/s published); T=\(seconds)s after 2 s of warm-up; a fresh hub per point")
            print(Self.table(["N", "offered/s", "deliveries/s"], offered: deliveries, points))
            panels.append(SVGPlot.Panel(
                title: "dashboards: \(deliveries) deliveries/s offered, P=\(Self.publishers)", xLabel: "dashboards N (log scale)",
                left: SVGPlot.Series(name: "deliveries/s", axisLabel: "deliveries/s", points: points.map { SVGPlot.Point(x: Double($0.count), y: $0.throughput) }),
                right: SVGPlot.Series(name: "p99 ms", axisLabel: "send to receive p99 ms", points: points.map { SVGPlot.Point(x: Double($0.count), y: $0.p99Millis) })))
        }
        let file = URL(fileURLWithPath: svg)
        try SVGPlot(panels: panels).render().write(to: file, atomically: true, encoding: .utf8)
        print("plot: \(file.path)")
    }

    private func measureDevices(_ count: Int) async throws -> Point {
        let target = try startHub(extraArguments: [])
        defer { target.stop() }
        let load = IngestLoad(
            devices: count, readingsPerFrame: readings, window: Self.window,
            framesPerSecondPerDevice: Double(rate) / Double(readings * count))
        let result: IngestLoad.Result
        do {
            try await load.connect(host: target.host, port: target.port)
            result = try await load.run(warmUp: Self.warmUp, measure: .seconds(seconds), cpu: target.cpuProbe)
        } catch {
            await load.disconnect()
            throw error
        }
        await load.disconnect()
        return Point(
            count: count, throughput: result.readingsPerSecond, p50Millis: result.p50Millis, p99Millis: result.p99Millis,
            hubCPU: result.hubCPU, databaseCPU: result.databaseCPU)
    }

    private func measureDashboards(_ count: Int) async throws -> Point {
        let token = "bench-\(UUID().uuidString)"
        let target = try startHub(extraArguments: ["--api-token", token])
        defer { target.stop() }
        let load = FanoutLoad(publishers: Self.publishers, subscribers: count, offeredDeliveries: deliveries, clientThreads: clientThreads)
        let measure = Duration.seconds(seconds)
        let result: FanoutLoad.Result
        let databaseCPU: Double?
        do {
            try await load.connect(host: target.host, port: target.port, token: token)
            // FanoutLoad samples the hub's CPU only: the database's is sampled here, over the
            // same warm-up and measured seconds, starting with the load.
            async let database = Self.databaseCPU(target.cpuProbe, after: Self.warmUp, over: measure)
            result = try await load.run(warmUp: Self.warmUp, measure: measure, cpu: target.cpuProbe)
            databaseCPU = try await database
        } catch {
            await load.disconnect()
            throw error
        }
        await load.disconnect()
        return Point(
            count: count, throughput: result.deliveriesPerSecond, p50Millis: result.p50Millis, p99Millis: result.p99Millis,
            hubCPU: result.hubCPU, databaseCPU: databaseCPU)
    }

    private func startHub(extraArguments: [String]) throws -> BenchTarget {
        try BenchTarget.startHub(
            extraArguments: Self.hubLimits + extraArguments + hubArguments.split(separator: " ").map(String.init))
    }

    private func warnIfThrottled(framesPerSecond: Double, what: String) {
        guard framesPerSecond > Self.deviceFrameRate, !hubArguments.contains("--device-frame-rate") else { return }
        print(String(
            format: "note: at the smallest count each %@ offers %.0f frames/s, above the hub's default --device-frame-rate %.0f; the hub will throttle it (raise it with --hub-args \"--device-frame-rate …\")",
            what, framesPerSecond, Self.deviceFrameRate))
    }

    /// The database's CPU, percent of one core, over `measure` after `warmUp`.
    private static func databaseCPU(_ probe: CPUProbe?, after warmUp: Duration, over measure: Duration) async throws -> Double? {
        guard let probe else { return nil }
        try await Task.sleep(for: warmUp)
        let start = probe.sample()
        try await Task.sleep(for: measure)
        return CPUProbe.usage(from: start, to: probe.sample()).database
    }

    /// The series' figures, right-aligned under their headers.
    private static func table(_ headers: [String], offered: Int, _ points: [Point]) -> String {
        let percent = { (value: Double?) in value.map { String(format: "%.0f", $0) } ?? "n/a" }
        let rows = [headers + ["p50 ms", "p99 ms", "hub cpu %", "database cpu %"]] + points.map { point in
            [
                String(point.count), String(offered), String(format: "%.0f", point.throughput),
                String(format: "%.2f", point.p50Millis), String(format: "%.2f", point.p99Millis),
                percent(point.hubCPU), percent(point.databaseCPU),
            ]
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max()! }
        let lines = rows.map { row in
            "  " + zip(row, widths).map { String(repeating: " ", count: $1 - $0.count) + $0 }.joined(separator: "   ")
        }
        return (lines + ["  (cpu: 100 % = one core)"]).joined(separator: "\n")
    }
}
