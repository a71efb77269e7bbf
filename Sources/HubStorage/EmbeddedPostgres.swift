import Foundation
import Logging

/// A private PostgreSQL cluster in a folder, run with the machine's server binaries.
///
/// It listens only on a Unix socket inside its folder. Started as root, it runs the server
/// as the `postgres` system user (or `nobody`), since PostgreSQL refuses to run as root.
public final class EmbeddedPostgres: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The cluster's folder (`PGDATA`); the socket lives here too.
    public let directory: URL
    public let database = "hub"
    private let binDirectory: String
    private let logger: Logger
    private let runAs: String?

    public init(directory: URL, logger: Logger) throws {
        self.directory = directory.standardizedFileURL
        self.logger = logger
        binDirectory = try Self.findBinDirectory()
        runAs = getuid() == 0 ? Self.serviceUser() : nil
    }

    /// libpq connection string for the cluster's `hub` database.
    public var url: String { "host=\(socketDirectory) port=5432 dbname=\(database) user=hub connect_timeout=5" }

    private var socketDirectory: String { directory.path }

    public var isRunning: Bool {
        (try? run("pg_ctl", ["status", "-D", directory.path], quiet: true)) != nil
    }

    /// Creates the cluster if needed and starts it, unless it is already running.
    /// - Returns: whether this call started it.
    @discardableResult
    public func start() throws -> Bool {
        let fileManager = FileManager.default
        guard socketDirectory.utf8.count + 16 < 108 else {
            throw Failure(description: "the data folder path \(socketDirectory) is too long for a Unix socket (max 91 characters)")
        }
        if !fileManager.fileExists(atPath: directory.appendingPathComponent("PG_VERSION").path) {
            try createCluster()
        }
        if isRunning {
            try ensureDatabase()
            return false
        }
        let log = directory.appendingPathComponent("server.log").path
        let options = [
            "-c listen_addresses=''", "-k \(socketDirectory)", "-c max_connections=100",
            "-c shared_buffers=256MB", "-c max_wal_size=4GB", "-c checkpoint_timeout=15min",
            "-c wal_buffers=16MB",
        ].joined(separator: " ")
        do {
            try run("pg_ctl", ["start", "-w", "-t", "60", "-D", directory.path, "-l", log, "-o", options])
        } catch {
            let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
            throw Failure(description: "PostgreSQL did not start in \(directory.path): \(error)\n\(tail)")
        }
        do {
            try ensureDatabase()
        } catch {
            _ = try? stop()
            throw error
        }
        return true
    }

    /// Creates the `hub` database if it is missing (a first start cut short after initdb,
    /// for example by a full disk).
    private func ensureDatabase() throws {
        let found = try run("psql", ["-h", socketDirectory, "-U", "hub", "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = '\(database)'"])
        guard found.trimmingCharacters(in: .whitespacesAndNewlines) != "1" else { return }
        try run("psql", ["-h", socketDirectory, "-U", "hub", "-d", "postgres", "-q", "-c", "CREATE DATABASE \(database)"])
    }

    /// Stops the cluster (fast shutdown: open transactions roll back, committed data stays).
    public func stop() throws {
        guard isRunning else { return }
        try run("pg_ctl", ["stop", "-w", "-t", "60", "-m", "fast", "-D", directory.path])
    }

    private func createCluster() throws {
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
        guard fileManager.isWritableFile(atPath: directory.path) else {
            throw Failure(description: "the data folder \(directory.path) is not writable")
        }
        if let runAs {
            try run("/bin/chown", [runAs, directory.path], asServiceUser: false)
        }
        try fileManager.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
        logger.info("creating a PostgreSQL cluster", metadata: ["path": "\(directory.path)"])
        try run("initdb", ["-D", directory.path, "-U", "hub", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"])
    }

    @discardableResult
    private func run(_ tool: String, _ arguments: [String], quiet: Bool = false, asServiceUser: Bool = true) throws -> String {
        let executable = tool.hasPrefix("/") ? tool : "\(binDirectory)/\(tool)"
        let (status, output) =
            if asServiceUser, let runAs {
                try ChildProcess.run("/usr/sbin/runuser", ["-u", runAs, "--", executable] + arguments)
            } else {
                try ChildProcess.run(executable, arguments)
            }
        guard status == 0 else {
            if !quiet { logger.debug("\(tool) failed", metadata: ["output": "\(output)"]) }
            throw Failure(description: "\(tool) exited with \(status): \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return output
    }

    private static func findBinDirectory() throws -> String {
        let fileManager = FileManager.default
        if let env = ProcessInfo.processInfo.environment["HUB_PG_BIN"], fileManager.fileExists(atPath: "\(env)/initdb") {
            return env
        }
        let versions = ((try? fileManager.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? [])
            .compactMap(Int.init).sorted(by: >)
        for version in versions where fileManager.fileExists(atPath: "/usr/lib/postgresql/\(version)/bin/initdb") {
            return "/usr/lib/postgresql/\(version)/bin"
        }
        for candidate in ["/usr/local/pgsql/bin", "/usr/bin", "/opt/homebrew/bin", "/usr/local/bin"]
        where fileManager.fileExists(atPath: "\(candidate)/initdb") {
            return candidate
        }
        throw Failure(description: "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql (Debian: apt-get install postgresql), set HUB_PG_BIN, or pass --database-url")
    }

    private static func serviceUser() -> String {
        getpwnam("postgres") != nil ? "postgres" : "nobody"
    }
}
