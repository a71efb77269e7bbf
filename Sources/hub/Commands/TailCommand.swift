import ArgumentParser
import Foundation
import HubClient
import HubProtocol
import NIOConcurrencyHelpers
import NIOPosix

/// `hub tail`: live readings of a running hub in a terminal, in the spirit of `mosquitto_sub`.
struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print live readings from a running hub (after a replay, with --since).",
        discussion: """
            One line per reading on standard output: time (UTC, µs), device, seq, metric, value; \
            or, with --json, one JSON object per reading. Presence changes, the end of the replay, \
            `lagged` and errors go to standard error. Exit code: 0 after --count readings or \
            --duration, 5 refused by the hub (a bad pattern or filter, a wrong token), 6 the hub \
            could not be reached or closed the connection.
            """)

    @OptionGroup var endpoint: HubEndpoint
    @Argument(help: "Device ids or globs with * (default: every device).") var patterns: [String] = []
    @Option(name: .customLong("metric"), help: "Only this metric (repeatable).") var metrics: [String] = []
    @Option(help: "Replay stored readings this far back first: 90s, 15m, 2h, 7d, or seconds.") var since: String?
    @Option(name: .customLong("max-rate"), help: "At most this many readings per second per device and metric.") var maxRate: Double?
    @Option(help: "Exit after this many readings.") var count: Int?
    @Option(help: "Exit after this many seconds.") var duration: Double?
    @Flag(help: "One JSON object per reading: device, seq, metric, ts_us, value.") var json = false

    func validate() throws {
        if let since { _ = try Self.seconds(since) }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be more than 0") }
        if let maxRate, !(maxRate > 0) { throw ValidationError("--max-rate must be more than 0") }
    }

    /// `90s`, `15m`, `2h`, `7d` or plain seconds, up to 10 years.
    static func seconds(_ text: String) throws -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        let (number, unit) = text.last.flatMap { units[$0] }.map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard let value = Double(number), value > 0, value * unit <= 10 * 365 * 86_400 else {
            throw ValidationError("--since must look like 90s, 15m, 2h or 7d (at most 10 years), got \(text)")
        }
        return value * unit
    }

    func run() async throws {
        let subscribe = Subscribe(
            id: "tail", devices: patterns.isEmpty ? ["*"] : patterns, metrics: metrics.isEmpty ? nil : metrics,
            maxRateHz: maxRate, sinceMicros: try since.map { Int64(Date().timeIntervalSince1970 * 1e6) - Int64(try Self.seconds($0) * 1e6) })
        let printer = NIOLockedValueBox(TailPrinter(json: json, limit: count))
        let outcome = NIOLockedValueBox<Int32?>(nil)
        let (finished, finish) = AsyncStream<Void>.makeStream()
        @Sendable func end(_ code: Int32) {
            outcome.withLockedValue { if $0 == nil { $0 = code } }
            finish.finish()
        }
        let client = try await endpoint.live(
            onMessage: { text in
                switch printer.withLockedValue({ $0.take(text) }) {
                case .goOn: break
                case .done: end(0)
                case .refused: end(ToolExit.refused)
                }
            },
            onClose: { code in
                if outcome.withLockedValue({ $0 == nil }) {
                    TailPrinter.note("the hub closed the connection (\(code.map(String.init) ?? "no code"))")
                }
                end(ToolExit.unreachable)
            })
        client.send(subscribe.json)
        let timer = duration.map { seconds in
            Task {
                try await Task.sleep(for: .seconds(seconds))
                end(0)
            }
        }
        for await _ in finished {}
        timer?.cancel()
        await client.close()
        let code = outcome.withLockedValue { $0 } ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}

/// What `hub tail` makes of each message: lines on standard output, notes on standard error.
struct TailPrinter {
    enum Next { case goOn, done, refused }

    let json: Bool
    /// Readings to print before `done`; `nil`: no end.
    var left: Int?
    var subscribed = false
    /// The widest device id and metric so far, to align the columns.
    var deviceWidth = 8
    var metricWidth = 6

    init(json: Bool, limit: Int?) {
        self.json = json
        left = limit
    }

    mutating func take(_ text: String) -> Next {
        let data = Data(text.utf8)
        guard case .some(.some(let type)) = MessageEnvelope.read(text)?.type else { return .goOn }
        switch type {
        case LiveTelemetry.type:
            guard left != 0, let message = try? LiveTelemetry.decode(data) else { return .goOn }
            var lines = ""
            for reading in message.readings {
                lines += line(message, reading) + "\n"
                if let count = left {
                    left = count - 1
                    if count == 1 { break }
                }
            }
            FileHandle.standardOutput.write(Data(lines.utf8))
            return left == 0 ? .done : .goOn
        case Subscribed.type:
            subscribed = true
        case ReplayDone.type:
            Self.note("replay done; live readings follow")
        case Presence.type:
            if let presence = try? Presence.decode(data) {
                Self.note("\(Self.stamp(presence.atMicros)) \(quoted(presence.device)) \(presence.online ? "online" : "offline") (session \(presence.session)\(presence.online ? ", from \(quoted(presence.remote))" : ""))")
            }
        case Lagged.type:
            if let lagged = try? Lagged.decode(data) {
                Self.note("lagged: the hub conflated \(lagged.dropped) readings (this terminal read too slowly)")
            }
        case ErrorMessage.type:
            let error = try? ErrorMessage.decode(data)
            Self.note("hub: \(error?.code ?? "error"): \(error?.message ?? text)")
            // Before `subscribed`, an error refuses the subscription itself.
            if !subscribed { return .refused }
        default:
            break
        }
        return .goOn
    }

    private mutating func line(_ message: LiveTelemetry, _ reading: LiveTelemetry.Reading) -> String {
        if json {
            var writer = JSONWriter(capacity: 96)
            writer.raw(#"{"device":"#)
            writer.string(message.device)
            writer.raw(#","seq":\#(message.seq),"metric":"#)
            writer.string(reading.metric)
            writer.raw(#","ts_us":\#(reading.tsMicros),"value":"#)
            writer.value(reading.value)
            writer.raw("}")
            return writer.text
        }
        let device = quoted(message.device), metric = quoted(reading.metric)
        deviceWidth = max(deviceWidth, device.count)
        metricWidth = max(metricWidth, metric.count)
        // As JSON: strings quoted, so what a device wrote cannot act on the terminal.
        return "\(Self.stamp(reading.tsMicros))  \(pad(device, deviceWidth))  \(pad("\(message.seq)", 8, left: true))  \(pad(metric, metricWidth))  \(reading.value.json)"
    }

    /// Ids and metric names as they are, or JSON-quoted if they hold anything a terminal
    /// might act on (control characters, spaces).
    private func quoted(_ text: String) -> String {
        text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !(0x80...0x9F).contains($0.value) && $0 != "\"" }
            ? text : JSONValue.string(text).json
    }

    private func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let room = String(repeating: " ", count: max(0, width - text.count))
        return left ? room + text : text + room
    }

    /// `2026-12-03T11:04:11.123456Z`.
    static func stamp(_ micros: Int64) -> String {
        var seconds = time_t(micros.floorDivided(by: 1_000_000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let fraction = micros - Int64(seconds) * 1_000_000
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), fraction)
    }

    static func note(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? quotient - 1 : quotient
    }
}
