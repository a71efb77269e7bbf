import ArgumentParser
import Foundation
import Hub
import HubClient
import NIOConcurrencyHelpers
import NIOPosix

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where a running hub is, for the terminal tools (`hub tail`, `hub send`, `hub status`).
struct HubEndpoint: ParsableArguments {
    @Option(help: "The hub: http://host:port or ws://host:port (env HUB_URL).")
    var url: String?

    @Option(name: .customLong("api-token"), help: "API token (env HUB_API_TOKEN; default: the data folder's api-token file).")
    var apiToken: String?

    @Option(name: .customLong("data-dir"), help: "Data folder whose api-token to use (env HUB_DATA_DIR; default .hub).")
    var dataDirectory: String?

    /// Host and port of `--url` (default 127.0.0.1:8080).
    func address() throws -> (host: String, port: Int) {
        let text = url ?? Environment.value("HUB_URL") ?? "http://127.0.0.1:8080"
        guard let parts = URLComponents(string: text), let host = parts.host, !host.isEmpty,
              ["http", "ws"].contains(parts.scheme ?? "")
        else { throw ValidationError("--url must look like http://host:port or ws://host:port, got \(text)") }
        return (host, parts.port ?? 80)
    }

    func token() throws -> String {
        if let token = apiToken ?? Environment.value("HUB_API_TOKEN") { return token }
        let directory = DatabaseOptions.dataDirectory(dataDirectory)
        guard let token = APIToken.load(in: directory) else {
            throw ValidationError("no --api-token, no HUB_API_TOKEN, and no token in \(directory.appendingPathComponent("api-token").path)")
        }
        return token
    }

    /// Opens `/live` with the token. A refused token (HTTP 401 or 403) or a hub that cannot
    /// be reached is said on standard error and ends the tool with its exit code.
    func live(onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable (UInt16?) -> Void) async throws -> LiveClient {
        let (host, port) = try address()
        let token = try token()
        do {
            return try await LiveClient.connect(
                host: host, port: port, token: token, group: MultiThreadedEventLoopGroup.singleton, onMessage: onMessage, onClose: onClose)
        } catch ClientFailure.refused(let status) where status == 401 || status == 403 {
            FileHandle.standardError.write(Data("the hub refused the token (HTTP \(status))\n".utf8))
            throw ExitCode(ToolExit.refused)
        } catch {
            FileHandle.standardError.write(Data("cannot reach the hub at \(host):\(port): \(error)\n".utf8))
            throw ExitCode(ToolExit.unreachable)
        }
    }

    /// One REST call: (status, body). Throws only when the hub cannot be reached.
    func get(_ path: String, token: String) async throws -> (status: Int, body: Data) {
        let (host, port) = try address()
        var request = URLRequest(url: URL(string: "http://\(host):\(port)\(path)")!, timeoutInterval: 10)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }
}

/// Exit codes of `hub tail`, `hub send` and `hub status` (docs/operations.md#terminal-tools).
enum ToolExit {
    static let failed: Int32 = 1
    static let timedOut: Int32 = 2
    static let cancelled: Int32 = 3
    static let notFinal: Int32 = 4
    static let refused: Int32 = 5
    static let unreachable: Int32 = 6
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a command to a device and print its status changes until it is final.",
        discussion: """
            Exit code: 0 succeeded, 1 failed, 2 timed out or expired, 3 cancelled, 4 not final \
            within --wait, 5 refused by the hub (unknown device, bad command, read-only token, \
            too many pending), 6 the hub could not be reached.
            """)

    @OptionGroup var endpoint: HubEndpoint
    @Argument(help: "The device id.") var device: String
    @Argument(help: "The command name.") var name: String
    @Option(help: "The command's parameters, a JSON object.") var params: String = "{}"
    @Option(name: .customLong("ttl"), help: "Seconds the command may wait for the device (the hub's default if absent).") var ttlSeconds: Int?
    @Option(name: .customLong("wait"), help: "Seconds to wait for a final state.") var waitSeconds: Double = 30
    @Flag(help: "Print each status change as the hub's JSON message.") var json = false

    func validate() throws {
        guard let data = params.data(using: .utf8), (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw ValidationError("--params must be a JSON object")
        }
        guard waitSeconds >= 0 else { throw ValidationError("--wait must be at least 0") }
    }

    func run() async throws {
        let outcome = NIOLockedValueBox<Int32?>(nil)
        let (finished, finish) = AsyncStream<Void>.makeStream()
        let id = NIOLockedValueBox<String?>(nil)
        let ref = "send-\(UUID().uuidString.prefix(8))"
        let printJSON = json
        @Sendable func end(_ code: Int32) {
            outcome.withLockedValue { if $0 == nil { $0 = code } }
            finish.finish()
        }
        let client = try await endpoint.live(onMessage: { text in
            guard let message = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
                  let type = message["type"] as? String
            else { return }
            switch type {
            case "command_status":
                let mine = id.withLockedValue { current -> Bool in
                    if current == nil, message["ref"] as? String == ref { current = message["id"] as? String }
                    return current != nil && current == message["id"] as? String
                }
                guard mine, let status = message["status"] as? String else { return }
                if printJSON {
                    Self.emit(text)
                } else {
                    var line = "\(Self.stamp()) \(status)"
                    if status == "queued" { line += "  id \(message["id"] as? String ?? "?")" }
                    if let result = message["result"], !(result is NSNull),
                       let data = try? JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .fragmentsAllowed]) {
                        line += "  result \(String(decoding: data, as: UTF8.self))"
                    }
                    // The device wrote it: quoted as JSON, so no control character reaches the terminal.
                    if let error = message["error"] as? String,
                       let data = try? JSONSerialization.data(withJSONObject: error, options: [.fragmentsAllowed]) {
                        line += "  error \(String(decoding: data, as: UTF8.self))"
                    }
                    Self.emit(line)
                }
                switch status {
                case "succeeded": end(0)
                case "failed": end(ToolExit.failed)
                case "timed_out", "expired": end(ToolExit.timedOut)
                case "cancelled": end(ToolExit.cancelled)
                default: break
                }
            case "error" where id.withLockedValue({ $0 == nil }):
                FileHandle.standardError.write(Data("hub refused the command: \(message["code"] as? String ?? "?"): \(message["message"] as? String ?? "")\n".utf8))
                end(ToolExit.refused)
            default:
                break
            }
        }, onClose: { code in
            if outcome.withLockedValue({ $0 == nil }) {
                FileHandle.standardError.write(Data("the hub closed the connection (\(code.map(String.init) ?? "no code"))\n".utf8))
            }
            end(ToolExit.unreachable)
        })
        // Subscribed to the device first (the hub takes a connection's messages in order),
        // so every later change of the command arrives.
        var command: [String: Any] = ["type": "command", "ref": ref, "device": device, "name": name,
                                      "params": try JSONSerialization.jsonObject(with: Data(params.utf8))]
        if let ttlSeconds { command["ttl_s"] = ttlSeconds }
        for message in [["type": "subscribe", "id": ref, "devices": [device]], command] {
            client.send(String(decoding: try JSONSerialization.data(withJSONObject: message), as: UTF8.self))
        }
        let deadline = Task {
            try await Task.sleep(for: .seconds(waitSeconds))
            end(ToolExit.notFinal)
        }
        for await _ in finished {}
        deadline.cancel()
        let code = outcome.withLockedValue { $0 } ?? ToolExit.notFinal
        if code == ToolExit.notFinal { FileHandle.standardError.write(Data("not final after \(waitSeconds) s\n".utf8)) }
        await client.close()
        if code != 0 { throw ExitCode(code) }
    }

    /// One line on standard output, written at once (a pipe sees each change as it happens).
    static func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func stamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print a fleet summary from a running hub.",
        discussion: "Exit code: 0 ready, 1 not ready (the reason is printed), 6 the hub could not be reached; 5 if the token is refused.")

    @OptionGroup var endpoint: HubEndpoint
    @Flag(help: "Print the summary as one JSON object.") var json = false

    func run() async throws {
        let token = try endpoint.token()
        let ready: (status: Int, body: Data), fleet: (status: Int, body: Data), metrics: (status: Int, body: Data)
        do {
            ready = try await endpoint.get("/readyz", token: token)
            fleet = try await endpoint.get("/api/v1/summary", token: token)
            metrics = try await endpoint.get("/metrics", token: token)
        } catch {
            FileHandle.standardError.write(Data("cannot reach the hub: \(error)\n".utf8))
            throw ExitCode(ToolExit.unreachable)
        }
        guard fleet.status == 200, let counts = (try? JSONSerialization.jsonObject(with: fleet.body)) as? [String: Any] else {
            FileHandle.standardError.write(Data("the hub answered \(fleet.status) to GET /api/v1/summary\n".utf8))
            throw ExitCode(ToolExit.refused)
        }
        let values = Self.samples(String(decoding: metrics.body, as: UTF8.self))
        func value(_ name: String) -> Int { Int(values[name] ?? 0) }
        func count(_ name: String) -> Any { counts[name] ?? 0 }
        let readiness = String(decoding: ready.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let summary: [(String, Any)] = [
            ("ready", ready.status == 200), ("readiness", readiness),
            ("devices", count("devices")), ("devices_online", count("devices_online")),
            ("device_connections", value("hub_devices_connected")), ("dashboards", value("hub_dashboards_connected")),
            ("readings_per_s", count("readings_per_s")),
            ("frames_accepted", value("hub_frames_accepted_total")), ("readings_accepted", value("hub_readings_accepted_total")),
            ("frames_rejected", value("hub_frames_rejected_total")), ("rejected_last_hour", count("rejected_last_hour")),
            ("frames_duplicate", value("hub_frames_duplicate_total")), ("commands_pending", count("commands_pending")),
            ("queue_depth", value("hub_ingest_queue_depth")), ("queue_capacity", value("hub_ingest_queue_capacity")),
            ("lagged", value("hub_live_lagged_total")),
        ]
        if json {
            let object = Dictionary(uniqueKeysWithValues: summary)
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for (key, value) in summary {
                print(key.replacingOccurrences(of: "_", with: " ").padding(toLength: 20, withPad: " ", startingAt: 0) + "\(value)")
            }
        }
        if ready.status != 200 { throw ExitCode(ToolExit.failed) }
    }

    /// Unlabelled (and labelled, by their whole series name) samples of Prometheus text.
    static func samples(_ text: String) -> [String: Double] {
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }
}
