import Foundation
import NIOConcurrencyHelpers

/// A throwaway `nats-server` on a free loopback port, for one test: started with `start()`,
/// killed with `kill()` (and can be started again on the same port), its folder removed by
/// `remove()`.
///
/// If `/usr/sbin/nats-server` is missing, `init` throws: the live tests fail, never skip.
final class NATSServer: Sendable {
    static let executable = "/usr/sbin/nats-server"

    let port: Int
    let folder: URL
    private let arguments: [String]
    private let process = NIOLockedValueBox<Process?>(nil)

    var url: String { "nats://127.0.0.1:\(port)" }

    /// - Parameter maxPayload: written to a config file as `max_payload` (there is no flag).
    init(maxPayload: Int? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw LiveTestError(
                "nats-server is not installed at \(Self.executable): install it (apt-get install nats-server) "
                    + "to run the live NATS client tests")
        }
        port = try LoopbackPort.free()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("nats-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var arguments = ["-a", "127.0.0.1", "-p", String(port), "-l", folder.appendingPathComponent("server.log").path]
        if let maxPayload {
            let config = folder.appendingPathComponent("server.conf")
            try "max_payload: \(maxPayload)\n".write(to: config, atomically: true, encoding: .utf8)
            arguments = ["-c", config.path] + arguments
        }
        self.arguments = arguments
    }

    /// Launches the server and returns once it accepts TCP connections (within 5 s).
    func start() async throws {
        let launched = Process()
        launched.executableURL = URL(fileURLWithPath: Self.executable)
        launched.arguments = arguments
        launched.standardOutput = FileHandle.nullDevice
        launched.standardError = FileHandle.nullDevice
        try launched.run()
        process.withLockedValue { $0 = launched }
        let deadline = ContinuousClock.now + .seconds(5)
        while !LoopbackPort.accepts(port) {
            guard launched.isRunning else { throw LiveTestError("nats-server exited at start: \(logTail())") }
            guard ContinuousClock.now < deadline else {
                kill()
                throw LiveTestError("nats-server did not accept connections on port \(port) within 5 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Kills the server (SIGKILL, an outage rather than a goodbye) and waits for it to exit.
    func kill() {
        guard let running = process.withLockedValue({ process in defer { process = nil }; return process }) else { return }
        if running.isRunning { Glibc.kill(running.processIdentifier, SIGKILL) }
        running.waitUntilExit()
    }

    /// Kills the server if it runs and removes its folder.
    func remove() {
        kill()
        try? FileManager.default.removeItem(at: folder)
    }

    private func logTail() -> String {
        let log = (try? String(contentsOf: folder.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
        return String(log.suffix(500))
    }
}

/// A live test's setup went wrong; the text says how.
struct LiveTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
