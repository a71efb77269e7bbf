import ArgumentParser
import Foundation
import Hub
import Logging

/// Where the data lives: shared by `serve`, `devices` and `bench`.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data folder for the embedded PostgreSQL cluster and the API token (env HUB_DATA_DIR).")
    var dataDirectory: String?

    @Option(name: .customLong("database-url"), help: "Use this PostgreSQL server instead of the embedded one (env HUB_DATABASE_URL).")
    var databaseURL: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env HUB_LOG_LEVEL).")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text or json (one object per line) (env HUB_LOG_FORMAT; default text).")
    var logFormat: String?

    var resolvedDataDirectory: URL { Self.dataDirectory(dataDirectory) }

    /// `--data-dir`, else env `HUB_DATA_DIR`, else `.hub`.
    static func dataDirectory(_ explicit: String?) -> URL {
        URL(fileURLWithPath: explicit ?? Environment.value("HUB_DATA_DIR") ?? ".hub")
    }

    var resolvedDatabaseURL: String? { databaseURL ?? Environment.value("HUB_DATABASE_URL") }

    func validate() throws {
        if let format = logFormat, !["text", "json"].contains(format) { throw ValidationError("--log-format must be text or json") }
    }

    func makeLogger(label: String = "hub") -> Logger {
        let level = Logger.Level(rawValue: logLevel ?? Environment.value("HUB_LOG_LEVEL") ?? "info") ?? .info
        let json = (logFormat ?? Environment.value("HUB_LOG_FORMAT")) == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : TextLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

enum Environment {
    /// The variable as set, even when empty (an empty token must stop the start).
    static func raw(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name]
    }

    static func value(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }
}
