import Foundation
import HubClient
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore

/// One simulated sensor on a `DeviceUplink`: `SensorSignals` at a set rate with jitter,
/// answers to `set_interval` and `reboot`, and, if asked, random disconnects that make it
/// resume.
final class SimulatedDevice: Sendable {
    struct Settings: Sendable {
        var interval: Duration = .seconds(1)
        var readingsPerFrame = 4
        /// Each wait is the interval times a random factor in 1 ± `jitter`.
        var jitter = 0.1
        /// Mean time between random disconnects; `nil` for none.
        var meanTimeBetweenDisconnects: Duration?
        var answersCommands = true
    }

    struct Counts: Sendable {
        var frames = 0
        var readings = 0
        var commands = 0
        var disconnects = 0
    }

    let uplink: DeviceUplink
    private let settings: Settings
    private let state: NIOLockedValueBox<(interval: Duration, counts: Counts, stopped: Bool)>

    init(id: String, token: String?, host: String, port: Int, group: EventLoopGroup, settings: Settings) throws {
        self.settings = settings
        uplink = try DeviceUplink(DeviceUplink.Configuration(host: host, port: port, deviceID: id, token: token), group: group)
        state = NIOLockedValueBox((settings.interval, Counts(), false))
        guard settings.answersCommands else { return }
        uplink.onCommand("set_interval") { [state] command in
            guard let seconds = command.params["seconds"]?.number, (0.1...3600).contains(seconds) else {
                return .failed("seconds must be a number from 0.1 to 3600")
            }
            state.withLockedValue {
                $0.interval = .milliseconds(Int64(seconds * 1000))
                $0.counts.commands += 1
            }
            return .ok(resultJSON: #"{"interval_s":\#(seconds)}"#)
        }
        uplink.onCommand("reboot") { [state, uplink] _ in
            state.withLockedValue { $0.counts.commands += 1 }
            // Reboot once the result is out: drop the connection, come back, resume.
            Task {
                try? await Task.sleep(for: .milliseconds(100))
                await uplink.interrupt()
            }
            return .ok(resultJSON: #"{"rebooting":true}"#)
        }
    }

    var counts: Counts { state.withLockedValue { $0.counts } }

    /// Sends frames until `stop()`.
    func run() async {
        uplink.start()
        var signals = SensorSignals()
        var nextDisconnect = settings.meanTimeBetweenDisconnects.map { ContinuousClock.now + Self.exponential(mean: $0) }
        while true {
            let (interval, stopped) = state.withLockedValue { ($0.interval, $0.stopped) }
            if stopped { return }
            try? await Task.sleep(for: interval * Double.random(in: (1 - settings.jitter)...(1 + settings.jitter)))
            if state.withLockedValue({ $0.stopped }) { return }
            let readings = signals.next(count: settings.readingsPerFrame, atSeconds: Date().timeIntervalSince1970)
            guard (try? await uplink.send(readings)) != nil else { return }
            state.withLockedValue {
                $0.counts.frames += 1
                $0.counts.readings += readings.count
            }
            if let due = nextDisconnect, let mean = settings.meanTimeBetweenDisconnects, ContinuousClock.now >= due {
                await uplink.interrupt()
                state.withLockedValue { $0.counts.disconnects += 1 }
                nextDisconnect = ContinuousClock.now + Self.exponential(mean: mean)
            }
        }
    }

    /// Stops sending, waits up to `timeout` for acks, and closes.
    func stop(timeout: Duration = .seconds(10)) async {
        state.withLockedValue { $0.stopped = true }
        await uplink.close(timeout: timeout)
    }

    private static func exponential(mean: Duration) -> Duration {
        mean * -log(Double.random(in: Double.ulpOfOne..<1))
    }
}
