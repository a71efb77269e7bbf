import ArgumentParser
import Foundation
import Histogram
import HubClient
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

struct CommandsBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commands",
        abstract: "N online devices answer every command at once; REST callers send commands with wait_s and time the round trip from the REST call to the device's result.")

    @Option(name: .customShort("n"), help: "Online devices.") var devices = 100
    @Option(help: "Offered commands per second; 0 saturates with --callers concurrent callers.") var rate = 0
    @Option(help: "Concurrent REST connections.") var callers = 32
    @Option(name: .customShort("t"), help: "Measured seconds (after 1 s of warm-up).") var seconds = 10

    func run() async throws {
        print("starting a hub with its own embedded PostgreSQL…")
        let token = "bench-\(UUID().uuidString)"
        let target = try BenchTarget.startHub(extraArguments: ["--api-token", token])
        defer { target.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)

        let run = UUID().uuidString.prefix(6)
        var clients: [DeviceClient] = []
        for index in 0..<devices {
            let answerer = NIOLockedValueBox<DeviceClient?>(nil)
            let client = try await DeviceClient.connect(
                host: target.host, port: target.port, deviceID: "cmd-\(run)-\(index)", token: nil, group: group,
                onEvent: { event in
                    // Answer on the event loop: ack and result at once, no parsing beyond the id.
                    guard case .text(let text) = event, text.hasPrefix(#"{"type":"command","id":""#),
                        let client = answerer.withLockedValue({ $0 })
                    else { return }
                    let id = String(text.dropFirst(24).prefix(36))
                    client.sendText(CommandAck(id: id).json)
                    client.sendText(CommandResult(id: id, ok: true, result: .object([:])).json)
                })
            answerer.withLockedValue { $0 = client }
            clients.append(client)
        }
        let ids = clients.map(\.welcome.device)

        let histogram = NIOLockedValueBox(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
        let completed = NIOLockedValueBox((ok: 0, other: 0))
        let measuring = NIOLockedValueBox(false)
        let stop = ContinuousClock.now + .seconds(1 + seconds)
        let interval: Duration? = rate > 0 ? .nanoseconds(Int64(1e9 * Double(callers) / Double(rate))) : nil
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for caller in 0..<callers {
                tasks.addTask {
                    let http = try await HTTPLoadClient.connect(host: target.host, port: target.port, group: group)
                    var next = ContinuousClock.now + .microseconds(Int64.random(in: 0..<1_000_000) / Int64(max(1, rate / callers + 1)))
                    var index = caller
                    while ContinuousClock.now < stop {
                        if let interval {
                            try await Task.sleep(until: next)
                            next += interval
                        }
                        let started = ContinuousClock.now
                        let answer = try await http.request(
                            .POST, "/api/v1/devices/\(ids[index % ids.count])/commands", token: token,
                            body: #"{"name":"ping","params":{},"wait_s":5}"#)
                        let micros = (ContinuousClock.now - started).components
                        index += callers
                        guard measuring.withLockedValue({ $0 }) else { continue }
                        completed.withLockedValue { if answer.status == 200 { $0.ok += 1 } else { $0.other += 1 } }
                        let value = UInt64(micros.seconds) * 1_000_000 + UInt64(micros.attoseconds / 1_000_000_000_000)
                        histogram.withLockedValue { _ = $0.record(max(1, value)) }
                    }
                    await http.close()
                }
            }
            tasks.addTask {
                try await Task.sleep(for: .seconds(1))
                measuring.withLockedValue { $0 = true }
            }
            try await tasks.waitForAll()
        }
        for client in clients { await client.close() }
        try? await group.shutdownGracefully()
        let (ok, other) = completed.withLockedValue { $0 }
        let result = histogram.withLockedValue { $0 }
        print([
            "commands: N=\(devices) \(rate > 0 ? "offered=\(rate)/s" : "saturating") callers=\(callers) T=\(seconds)s",
            String(format: "  completed     %.0f commands/s succeeded  (%d other answers)", Double(ok) / Double(seconds), other),
            String(format: "  round trip    p50 %.2f ms   p99 %.2f ms   max %.2f ms  (REST call to the device's result)",
                   Double(result.valueAtPercentile(50)) / 1000, Double(result.valueAtPercentile(99)) / 1000, Double(result.max) / 1000),
        ].joined(separator: "\n"))
    }
}
