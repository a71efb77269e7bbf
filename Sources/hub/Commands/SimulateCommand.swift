import ArgumentParser
import Foundation
import HubClient
import NIOCore
import NIOPosix

struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run a fleet of simulated sensors against a running hub; show progress, then a summary checked against the hub.")

    @Option(help: "The hub (default http://127.0.0.1:8080).") var url = "http://127.0.0.1:8080"
    @Option(name: .customLong("api-token"), help: "Full API token, to register the devices (env HUB_API_TOKEN).")
    var apiToken: String?
    @Option(name: .customLong("tokens"), help: "A file of \"id token\" lines: use these devices instead of registering.")
    var tokensFile: String?
    @Option(name: .customShort("n"), help: "Devices (when registering).") var devices = 100
    @Option(help: "Device id prefix (when registering): <prefix>-0001 …") var prefix = "sim"
    @Option(help: "Frames per second per device.") var rate = 1.0
    @Option(help: "Readings per frame (plus a firmware string every 60th frame).") var readings = 4
    @Option(help: "Random variation of each interval, as a fraction.") var jitter = 0.1
    @Option(name: .customLong("disconnect-every"), help: "Mean seconds between a device's random disconnects (0: never).")
    var disconnectEvery = 0.0
    @Option(name: .customShort("t"), help: "Seconds to run (0: until Ctrl-C).") var seconds = 60

    func validate() throws {
        guard rate > 0, rate <= 1000 else { throw ValidationError("--rate must be above 0 and at most 1000") }
        guard (1...1000).contains(readings) else { throw ValidationError("--readings must be 1 to 1000") }
        guard (0..<1).contains(jitter) else { throw ValidationError("--jitter must be from 0 to below 1") }
        guard (1...100_000).contains(devices) else { throw ValidationError("-n must be 1 to 100000") }
    }

    func run() async throws {
        guard let components = URLComponents(string: url), let host = components.host else {
            throw ValidationError("--url must look like http://host:port")
        }
        let port = components.port ?? 8080
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let api = try await HubAPI(host: host, port: port, token: apiToken ?? ProcessInfo.processInfo.environment["HUB_API_TOKEN"], group: group)
        let credentials: [(id: String, token: String)]
        if let tokensFile {
            credentials = try Self.readTokens(tokensFile)
        } else {
            print("registering \(devices) devices (\(prefix)-…)…")
            credentials = try await api.register((1...devices).map { String(format: "\(prefix)-%04d", $0) })
        }

        var settings = SimulatedDevice.Settings()
        settings.interval = .nanoseconds(Int64(1e9 / rate))
        settings.readingsPerFrame = readings
        settings.jitter = jitter
        settings.meanTimeBetweenDisconnects = disconnectEvery > 0 ? .milliseconds(Int64(disconnectEvery * 1000)) : nil
        let fleet = try credentials.map {
            try SimulatedDevice(id: $0.id, token: $0.token, host: host, port: port, group: group, settings: settings)
        }
        print("simulating \(fleet.count) devices at \(rate) frames/s each, \(readings) readings per frame\(seconds > 0 ? ", for \(seconds) s" : "")…")
        let started = ContinuousClock.now
        let runs = fleet.map { device in Task { await device.run() } }

        let interrupted = SignalWatch()
        while seconds == 0 || ContinuousClock.now < started + .seconds(seconds), !interrupted.fired {
            try? await Task.sleep(for: .seconds(min(5, seconds > 0 ? seconds : 5)))
            print(Self.progress(fleet, since: started))
        }

        print("stopping: waiting up to 10 s for the last acks…")
        await withTaskGroup(of: Void.self) { group in
            for device in fleet { group.addTask { await device.stop() } }
        }
        for run in runs { await run.value }
        let ok = try await summary(fleet, api: api, since: started)
        await api.close()
        try? await group.shutdownGracefully()
        if !ok { throw ExitCode.failure }
    }

    private static func progress(_ fleet: [SimulatedDevice], since started: ContinuousClock.Instant) -> String {
        let counts = fleet.map(\.counts)
        let online = fleet.filter { $0.uplink.currentWelcome != nil }.count
        let pending = fleet.reduce(0) { $0 + $1.uplink.pending }
        return String(
            format: "  %5.0f s   online %d/%d   frames %d   unacked %d   reconnects %d   commands %d",
            (ContinuousClock.now - started).seconds, online, fleet.count, counts.reduce(0) { $0 + $1.frames }, pending,
            fleet.reduce(0) { $0 + max(0, $1.uplink.connections - 1) }, counts.reduce(0) { $0 + $1.commands })
    }

    /// Prints the totals and checks every device's last acked seq against the hub's
    /// `last_seq`. - Returns: whether everything was acked and matches.
    private func summary(_ fleet: [SimulatedDevice], api: HubAPI, since started: ContinuousClock.Instant) async throws -> Bool {
        let counts = fleet.map(\.counts)
        let frames = counts.reduce(0) { $0 + $1.frames }
        let unacked = fleet.reduce(0) { $0 + $1.uplink.pending }
        var mismatches: [String] = []
        for (device, count) in zip(fleet, counts) {
            let stored = try await api.lastSeq(device: device.uplink.configuration.deviceID)
            if stored < UInt64(count.frames) { mismatches.append("\(device.uplink.configuration.deviceID): sent \(count.frames), hub has \(stored)") }
        }
        print([
            "summary after \(String(format: "%.0f", (ContinuousClock.now - started).seconds)) s:",
            "  devices            \(fleet.count)",
            "  frames sent        \(frames)  (\(String(format: "%.0f", Double(frames) / (ContinuousClock.now - started).seconds)) /s)",
            "  readings sent      \(counts.reduce(0) { $0 + $1.readings })",
            "  unacked at end     \(unacked)",
            "  reconnects         \(fleet.reduce(0) { $0 + max(0, $1.uplink.connections - 1) })  (\(counts.reduce(0) { $0 + $1.disconnects }) random disconnects)",
            "  commands answered  \(counts.reduce(0) { $0 + $1.commands })",
            "  hub's last_seq     \(mismatches.isEmpty ? "matches every device's frames" : "\(mismatches.count) devices behind")",
        ].joined(separator: "\n"))
        mismatches.prefix(10).forEach { print("    \($0)") }
        return unacked == 0 && mismatches.isEmpty
    }

    private static func readTokens(_ path: String) throws -> [(id: String, token: String)] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(whereSeparator: \.isWhitespace)
            guard !fields.isEmpty, !fields[0].hasPrefix("#") else { return nil }
            guard fields.count == 2 else { throw ValidationError("\(path): expected \"id token\" lines, got \"\(line)\"") }
            return (String(fields[0]), String(fields[1]))
        }
    }
}

/// The REST calls the simulator makes, over a few keep-alive connections.
private struct HubAPI {
    let connections: [HTTPLoadClient]
    let token: String?

    init(host: String, port: Int, token: String?, group: MultiThreadedEventLoopGroup) async throws {
        var connections: [HTTPLoadClient] = []
        for _ in 0..<8 { connections.append(try await HTTPLoadClient.connect(host: host, port: port, group: group)) }
        self.connections = connections
        self.token = token
    }

    /// Registers each id, or gives it a fresh token if it exists. - Returns: ids and tokens.
    func register(_ ids: [String]) async throws -> [(id: String, token: String)] {
        guard let token else { throw ValidationError("registering devices needs --api-token (or HUB_API_TOKEN); or pass --tokens") }
        return try await withThrowingTaskGroup(of: [(id: String, token: String)].self) { tasks in
            for (index, http) in connections.enumerated() {
                tasks.addTask {
                    var made: [(id: String, token: String)] = []
                    for id in ids.enumerated().filter({ $0.offset % connections.count == index }).map(\.element) {
                        var answer = try await http.request(.POST, "/api/v1/devices", token: token, body: #"{"id":"\#(id)","labels":{"fleet":"simulated"}}"#)
                        if answer.status == 409 { answer = try await http.request(.POST, "/api/v1/devices/\(id)/token", token: token, body: "") }
                        guard (200...201).contains(answer.status),
                            let object = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
                            let deviceToken = object["token"] as? String
                        else { throw ValidationError("registering \(id): HTTP \(answer.status) \(answer.body)") }
                        made.append((id, deviceToken))
                    }
                    return made
                }
            }
            var all: [(id: String, token: String)] = []
            for try await made in tasks { all += made }
            return all.sorted { $0.id < $1.id }
        }
    }

    func lastSeq(device: String) async throws -> UInt64 {
        let answer = try await connections[0].request(.GET, "/api/v1/devices/\(device)", token: token ?? "", body: "")
        guard answer.status == 200, let object = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
            let seq = (object["last_seq"] as? NSNumber)?.uint64Value
        else { throw ValidationError("GET /api/v1/devices/\(device): HTTP \(answer.status) \(answer.body)") }
        return seq
    }

    func close() async {
        for connection in connections { await connection.close() }
    }
}

/// Notices Ctrl-C (SIGINT) so a run without a time limit can end with its summary.
private final class SignalWatch: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let flag = NSLock()
    private var value = false

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT)
        source.setEventHandler { [unowned self] in flag.withLock { value = true } }
        source.resume()
    }

    var fired: Bool { flag.withLock { value } }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
