import Foundation
import HubClient
import HubProtocol
import NIOCore

/// One simulated sensor: realistic signals, reconnects that resume from `last_seq`, and
/// answers to commands. All its work runs on its connection's event loop.
final class SimulatedDevice: @unchecked Sendable {
    let id: String
    private let token: String?
    private let host: String
    private let port: Int
    private let group: EventLoopGroup
    private let answersCommands: Bool
    private var interval: TimeAmount
    private let phase = Double.random(in: 0..<(2 * .pi))
    private let baseTemperature = Double.random(in: 18...24)
    private var client: DeviceClient?
    private var seq: UInt64 = 0
    private var counter: Int64 = 0
    private var door = false
    private var task: RepeatedTask?
    private(set) var sent = 0
    private(set) var commandsAnswered = 0
    private var stopped = false

    init(id: String, token: String?, host: String, port: Int, group: EventLoopGroup, interval: TimeAmount, answersCommands: Bool) {
        self.id = id
        self.token = token
        self.host = host
        self.port = port
        self.group = group
        self.interval = interval
        self.answersCommands = answersCommands
    }

    /// Connects (retrying with capped backoff) and starts sending.
    func run() async {
        var backoff = 0.5
        while !stopped {
            do {
                let client = try await DeviceClient.connect(
                    host: host, port: port, deviceID: id, token: token, group: group,
                    onEvent: { [weak self] event in self?.handle(event) })
                self.client = client
                let loop = client.channel.eventLoop
                try await loop.submit { [self] in
                    seq = max(seq, client.welcome.lastSeq)
                    schedule(on: loop)
                }.get()
                backoff = 0.5
                try await client.channel.closeFuture.get()
            } catch {
                try? await Task.sleep(for: .seconds(backoff * Double.random(in: 0.5...1.5)))
                backoff = min(backoff * 2, 10)
            }
        }
    }

    func stop() async {
        stopped = true
        task?.cancel()
        await client?.close()
    }

    private func schedule(on loop: EventLoop) {
        task?.cancel()
        task = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in self?.sendReading() }
    }

    private func sendReading() {
        guard let client, client.channel.isActive else { return }
        seq += 1
        counter += Int64.random(in: 0...3)
        if Double.random(in: 0..<1) < 0.05 { door.toggle() }
        let now = Date().timeIntervalSince1970
        let temperature = baseTemperature + 3 * sin(now / 60 + phase) + Double.random(in: -0.2...0.2)
        var readings = [
            Reading(name: "temp", value: .f64((temperature * 100).rounded() / 100)),
            Reading(name: "humidity", value: .f64(((45 + 10 * cos(now / 90 + phase) + Double.random(in: -1...1)) * 10).rounded() / 10)),
            Reading(name: "count", value: .i64(counter)),
            Reading(name: "door.open", value: .bool(door)),
        ]
        if seq % 60 == 1 { readings.append(Reading(name: "fw", value: .string("1.4.\(seq % 7)"))) }
        client.send(TelemetryFrame(seq: seq, baseTime: Int64(now * 1_000_000), readings: readings))
        sent += 1
    }

    private func handle(_ event: DeviceClient.Event) {
        guard case .text(let text) = event,
            let message = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            message["type"] as? String == "command", let id = message["id"] as? String, let client
        else { return }
        client.sendText(#"{"type":"command_ack","id":"\#(id)"}"#)
        let name = message["name"] as? String ?? ""
        let params = message["params"] as? [String: Any] ?? [:]
        switch (answersCommands, name) {
        case (true, "set_interval"):
            let seconds = (params["seconds"] as? NSNumber)?.doubleValue ?? 1
            interval = .milliseconds(Int64(max(0.1, min(seconds, 3600)) * 1000))
            schedule(on: client.channel.eventLoop)
            client.sendText(#"{"type":"command_result","id":"\#(id)","ok":true,"result":{"interval_s":\#(seconds)}}"#)
        case (true, "reboot"):
            client.sendText(#"{"type":"command_result","id":"\#(id)","ok":true,"result":{"rebooted":true}}"#)
        default:
            client.sendText(#"{"type":"command_result","id":"\#(id)","ok":false,"error":"unsupported"}"#)
        }
        commandsAnswered += 1
    }
}
