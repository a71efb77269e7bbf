import ArgumentParser
import Foundation
import Histogram
import HubClient
import HubProtocol
import NIOCore
import NIOPosix

/// Devices move between two running cluster nodes, the old connection still open: each
/// move is timed from the new connection's start to its welcome, and the welcome's
/// `last_seq` is checked against the frames the device sent before it moved (the drain
/// commits them all).
struct TakeoverBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "takeover",
        abstract: "Devices move between two cluster nodes (hub serve --cluster … --auto-provision) with the old connection open; prints the time from connect to welcome, and welcomes whose last_seq missed a frame sent before the move.")

    @Option(help: "The first node, ws://host:port.") var url: String
    @Option(name: .customLong("to"), help: "The second node, ws://host:port.") var other: String
    @Option(name: .customShort("n"), help: "Devices, moving one after another.") var devices = 20
    @Option(help: "Moves per device.") var moves = 10
    @Option(help: "Frames a device sends before each move, not waiting for their acks.") var frames = 5

    func run() async throws {
        let nodes = [try BenchTarget(url: url), try BenchTarget(url: other)]
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var missed = 0
        let run = UUID().uuidString.prefix(6)
        for index in 0..<devices {
            let id = "move-\(run)-\(index)"
            var current = try await DeviceClient.connect(host: nodes[0].host, port: nodes[0].port, deviceID: id, token: nil, group: group)
            var seq = current.welcome.lastSeq
            for move in 1...moves {
                for _ in 0..<frames {
                    seq += 1
                    current.send(TelemetryFrame(seq: seq, baseTime: 0, readings: [Reading(name: "t", value: .f64(Double(seq)))]))
                }
                let node = nodes[move % 2]
                let started = ContinuousClock.now
                let next = try await DeviceClient.connect(host: node.host, port: node.port, deviceID: id, token: nil, group: group)
                let elapsed = ContinuousClock.now - started
                _ = histogram.record(UInt64(elapsed.components.seconds) * 1_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000))
                if next.welcome.lastSeq != seq { missed += 1 }
                await current.abort()
                current = next
            }
            await current.close()
        }
        try? await group.shutdownGracefully()
        func ms(_ quantile: Double) -> String { String(format: "%.1f", Double(histogram.valueAtPercentile(quantile)) / 1000) }
        print("takeover with the old node alive: \(histogram.totalCount) moves, connect to welcome p50 \(ms(50)) ms, p90 \(ms(90)) ms, p99 \(ms(99)) ms, max \(String(format: "%.1f", Double(histogram.max) / 1000)) ms")
        print("welcomes below the last frame sent before the move (still in flight on the old socket; the device resends them): \(missed)")
    }
}
