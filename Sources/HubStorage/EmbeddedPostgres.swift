import Foundation
import Logging

/// A private PostgreSQL cluster in a folder, run with the machine's server binaries.
///
/// It listens only on a Unix socket inside its folder (mode 0700, owned by the server's
/// user), never on TCP, and its `pg_hba.conf` has only local lines. Started as root, it
/// runs the server as the `postgres` system user, or creates a dedicated `hub-postgres`
/// system user where there is none (PostgreSQL refuses to run as root); never `nobody`.
/// Its settings go into a configuration file of the hub's (`hub.conf`), so no path passes
/// through a shell.
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
        runAs = try Self.serviceUserIfRoot(create: true)
    }

    /// libpq connection string for the cluster's `hub` database.
    public var url: String { "host=\(Self.conninfoValue(socketDirectory)) port=5432 dbname=\(database) user=hub connect_timeout=5" }

    /// A value for a libpq connection string: single-quoted, with `'` and `\` escaped, so
    /// a path with spaces or quotes stays one value.
    static func conninfoValue(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }

    private var socketDirectory: String { directory.path }

    public var isRunning: Bool {
        (try? run("pg_ctl", ["status", "-D", directory.path], quiet: true)) != nil
    }

    /// Creates the cluster if needed and starts it, unless it is already running.
    /// - Returns: whether this call started it.
    @discardableResult
    public func start() throws -> Bool {
        let fileManager = FileManager.default
        guard !socketDirectory.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw Failure(description: "the data folder path \(socketDirectory.debugDescription) holds control characters")
        }
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
        try writeSettings()
        do {
            try run("pg_ctl", ["start", "-w", "-t", "60", "-D", directory.path, "-l", log])
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
        try run("initdb", [
            "-D", directory.path, "-U", "hub", "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--no-locale", "--no-instructions",
        ])
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

    /// The user the server runs as when the hub runs as root: `postgres` if the system has
    /// it (Debian's postgresql package makes it), else `hub-postgres`, created as a system
    /// user without a home or a login shell when `create` is set. `nil` when not root.
    public static func serviceUserIfRoot(create: Bool = false) throws -> String? {
        guard getuid() == 0 else { return nil }
        if getpwnam("postgres") != nil { return "postgres" }
        let dedicated = "hub-postgres"
        if getpwnam(dedicated) != nil || !create { return dedicated }
        let (status, output) = try ChildProcess.run(
            "/usr/sbin/useradd", ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", dedicated])
        guard status == 0 || getpwnam(dedicated) != nil else {
            throw Failure(description: "no postgres user to run the embedded cluster as, and useradd \(dedicated) failed: \(output)")
        }
        return dedicated
    }

    /// The server's settings, rewritten at every start: `hub.conf`, included from
    /// `postgresql.conf`, and a `pg_hba.conf` that trusts the Unix socket only (the folder's
    /// mode keeps everyone but the hub's and the server's users away from it).
    private func writeSettings() throws {
        let settings = [
            "listen_addresses = ''", "unix_socket_directories = \(Self.quoted(socketDirectory))",
            "unix_socket_permissions = 0700", "max_connections = 100", "shared_buffers = 256MB", "max_wal_size = 4GB",
            "checkpoint_timeout = 15min", "wal_buffers = 16MB",
        ]
        try write(settings.joined(separator: "\n") + "\n", to: "hub.conf")
        try write("# Written by the hub at every start: the Unix socket only, never TCP.\nlocal all all trust\n", to: "pg_hba.conf")
        let main = directory.appendingPathComponent("postgresql.conf")
        let text = (try? String(contentsOf: main, encoding: .utf8)) ?? ""
        let include = "include_if_exists = 'hub.conf'"
        if !text.contains(include) { try write(text + "\n" + include + "\n", to: "postgresql.conf") }
    }

    private func write(_ text: String, to name: String) throws {
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        if let runAs, let user = getpwnam(runAs) { chown(path, user.pointee.pw_uid, user.pointee.pw_gid) }
        chmod(path, 0o600)
    }

    /// A string value for postgresql.conf: single-quoted, with quotes and backslashes
    /// escaped. Paths with control characters are refused.
    static func quoted(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''") + "'"
    }
}
