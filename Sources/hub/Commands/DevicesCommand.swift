import ArgumentParser
import Foundation
import Hub
import HubStorage
import Postgres

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices", abstract: "Register and manage devices.",
        subcommands: [Add.self, List.self, Remove.self, Token.self])

    /// Runs `body` against the configured database (starting the embedded cluster if needed,
    /// and stopping it again if this command started it).
    static func withStore<T>(_ options: DatabaseOptions, _ body: (DeviceStore) throws -> T) throws -> T {
        let logger = options.makeLogger(label: "hub.devices")
        let target = try DatabaseTarget(
            databaseURL: options.resolvedDatabaseURL,
            clusterDirectory: options.resolvedDataDirectory.appendingPathComponent("postgres"), logger: logger,
            timeout: .seconds(10))
        defer { target.stop() }
        return try body(DeviceStore(connection: PostgresConnection(url: target.url)))
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a device and print its token (shown once).")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "Device id: 1-64 of A-Z a-z 0-9 . _ -") var id: String

        func run() throws {
            let token = try DevicesCommand.withStore(database) { try $0.add(id: id) }
            print("device \(id) registered")
            print("token: \(token)")
            print("(shown once; connect with  Authorization: Bearer <token>  to /devices/\(id))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered devices.")
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            let devices = try DevicesCommand.withStore(database) { try $0.list() }
            print("ID".padding(toLength: 24, withPad: " ", startingAt: 0) + " ENABLED  LAST_SEQ   SESSION  LAST_SEEN")
            for device in devices {
                let seen = device.lastSeenMicros.map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double($0) / 1e6)) } ?? "-"
                print(device.id.padding(toLength: 24, withPad: " ", startingAt: 0)
                      + " " + (device.enabled ? "yes" : "no ").padding(toLength: 8, withPad: " ", startingAt: 0)
                      + " " + String(device.lastSeq).padding(toLength: 10, withPad: " ", startingAt: 0)
                      + " " + String(device.session).padding(toLength: 8, withPad: " ", startingAt: 0)
                      + " " + seen)
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a device (its data stays unless --purge).")
        @OptionGroup var database: DatabaseOptions
        @Argument var id: String
        @Flag(help: "Also delete its telemetry, rejected frames and commands; a re-created id starts from seq 0.")
        var purge = false

        func run() throws {
            try DevicesCommand.withStore(database) { try $0.remove(id: id, purge: purge) }
            print(purge ? "device \(id) removed with its data" : "device \(id) removed (data and mark kept)")
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a new token; the old one stops working and a live connection is closed (4003).")
        @OptionGroup var database: DatabaseOptions
        @Argument var id: String

        func run() throws {
            let token = try DevicesCommand.withStore(database) { try $0.rotateToken(id: id) }
            print("token: \(token)")
        }
    }
}
