import ArgumentParser
import Foundation
import Histogram
import HubStorage
import Logging
import NIOPosix
import Postgres

struct HistoryBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Load N readings spread over D simulated days through the normal device path, then time REST history queries (p50, p99) and report bytes on disk per reading.")

    @Option(name: .customShort("n"), help: "Readings to load.") var readings = 100_000_000
    @Option(help: "Devices.") var devices = 1_000
    @Option(help: "Simulated days, ending now.") var days = 30
    @Option(name: .customShort("r"), help: "Readings per frame (metrics per device).") var readingsPerFrame = 10
    @Option(help: "Queries of each kind.") var queries = 200
    @Flag(help: "Keep the hub's data folder (and its PostgreSQL cluster) for a look afterwards.") var keepData = false

    func run() async throws {
        let token = "bench-\(UUID().uuidString)"
        print("starting a hub with its own embedded PostgreSQL…")
        let target = try BenchTarget.startHub(extraArguments: ["--api-token", token])
        defer { target.stop(keepingData: keepData) }
        guard let databaseURL = target.databaseURL else { return }

        let framesPerDevice = UInt64(max(1, readings / (devices * readingsPerFrame)))
        let nowMicros = Int64(Date().timeIntervalSince1970) * 1_000_000
        let startMicros = nowMicros - Int64(days) * 86_400_000_000
        let stepMicros = Int64(days) * 86_400_000_000 / Int64(framesPerDevice)
        // The partitions for the whole range first, so the readings go straight into them.
        let manager = PartitionManager(url: databaseURL, settings: .init(), logger: Logger(label: "bench"))
        let created = try manager.ensurePartitions(
            fromSeconds: startMicros / 1_000_000, toSeconds: nowMicros / 1_000_000 + 86_400, on: PostgresConnection(url: databaseURL))
        print("created \(created) day partitions; loading \(framesPerDevice * UInt64(devices * readingsPerFrame)) readings…")

        let load = IngestLoad(devices: devices, readingsPerFrame: readingsPerFrame, window: 64)
        load.history = .init(framesPerDevice: framesPerDevice) { device, frame in
            // Devices spread their frames evenly; each starts at its own phase in the step.
            startMicros + Int64(frame - 1) * stepMicros + Int64(device) * (stepMicros / Int64(max(1, devices)))
        }
        try await load.connect(host: target.host, port: target.port)
        let started = ContinuousClock.now
        let total = Int(framesPerDevice) * devices * readingsPerFrame
        try await load.loadHistory { frames in
            let seconds = (ContinuousClock.now - started).seconds
            print(String(format: "  %6.0f s  %d of %d readings  (%.0f /s)", seconds, frames * readingsPerFrame, total, Double(frames * readingsPerFrame) / seconds))
        }
        let loadSeconds = (ContinuousClock.now - started).seconds
        await load.disconnect()
        let database = try PostgresConnection(url: databaseURL)
        while Int(try database.query("SELECT (SELECT count(*) FROM rollup_delta) + (SELECT count(*) FROM rollup_pending)").rows[0][0] ?? "0") ?? 0 > 0 {
            try await Task.sleep(for: .seconds(1))
        }
        let foldedAt = (ContinuousClock.now - started).seconds
        try database.execute("VACUUM ANALYZE")

        // Bytes on disk.
        let sizes = try database.query(
            """
            SELECT
              (SELECT sum(pg_table_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'reading'::regclass),
              (SELECT sum(pg_indexes_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'reading'::regclass),
              pg_total_relation_size('rollup_1m'), pg_total_relation_size('rollup_1h'),
              (SELECT count(*) FROM reading), (SELECT sum(count) FROM rollup_1h), (SELECT coalesce(sum(count), 0) FROM rollup_1m)
            """).rows[0].map { Double($0 ?? "0") ?? 0 }
        let stored = sizes[4]
        // Every reading is in the hour rollup exactly once.
        guard sizes[5] == stored else { throw ValidationError("rollup_1h counts \(Int(sizes[5])) readings; reading holds \(Int(stored))") }

        // Queries through the REST API, one device and one metric each.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let http = try await HTTPLoadClient.connect(host: target.host, port: target.port, group: group)
        func time(_ name: String, _ path: (String, String) -> String) async throws -> String {
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var rows = 0
            for index in 0..<queries {
                let device = load.ids[(index * 7919) % load.ids.count]
                let metric = "metric.\(index % readingsPerFrame)"
                let begun = ContinuousClock.now
                let answer = try await http.request(.GET, path(device, metric), token: token, body: "")
                let took = ContinuousClock.now - begun
                guard answer.status == 200 else { throw ValidationError("\(name): HTTP \(answer.status) \(answer.body)") }
                rows += answer.body.components(separatedBy: "\"ts_us\"").count - 1
                _ = histogram.record(UInt64(max(1, took.seconds * 1_000_000)))
            }
            return String(
                format: "  %@: p50 %7.2f ms   p99 %7.2f ms   (%d queries, %.0f rows each)", name as NSString,
                Double(histogram.valueAtPercentile(50)) / 1000, Double(histogram.valueAtPercentile(99)) / 1000, queries,
                Double(rows) / Double(queries))
        }
        let hour: Int64 = 3_600_000_000
        let monthFrom = (nowMicros - Int64(days) * 86_400_000_000) / hour * hour
        let monthTo = nowMicros / hour * hour
        var lines = [
            "history: \(Int(stored)) readings, \(devices) devices × \(readingsPerFrame) metrics over \(days) days",
            String(format: "  loaded in %.0f s (%.0f readings/s through the device path); rollups folded by %.0f s", loadSeconds, Double(total) / loadSeconds, foldedAt),
            String(format: "  rollups: rollup_1h counts %.0f readings (all of them); rollup_1m %.0f (hours past 60 readings only)", sizes[5], sizes[6]),
            String(
                format: "  bytes per reading  %.1f table + %.1f indexes + %.1f rollups (1 m %.1f, 1 h %.1f) = %.1f",
                sizes[0] / stored, sizes[1] / stored, (sizes[2] + sizes[3]) / stored, sizes[2] / stored, sizes[3] / stored,
                (sizes[0] + sizes[1] + sizes[2] + sizes[3]) / stored),
        ]
        lines.append(try await time("1 hour raw") { device, metric in
            let from = monthFrom + Int64.random(in: 0..<Int64(days * 24 - 1)) * hour
            return "/api/v1/devices/\(device)/telemetry?metric=\(metric)&from_us=\(from)&to_us=\(from + hour)"
        })
        lines.append(try await time("\(days) days, 1 h buckets") { device, metric in
            "/api/v1/devices/\(device)/telemetry?metric=\(metric)&bucket_s=3600&agg=avg&from_us=\(monthFrom)&to_us=\(monthTo)&limit=10000"
        })
        lines.append(try await time("\(days) days, 1 min buckets") { device, metric in
            "/api/v1/devices/\(device)/telemetry?metric=\(metric)&bucket_s=60&agg=avg&from_us=\(monthFrom)&to_us=\(monthTo)&limit=10000"
        })
        await http.close()
        try? await group.shutdownGracefully()
        print(lines.joined(separator: "\n"))
    }
}
