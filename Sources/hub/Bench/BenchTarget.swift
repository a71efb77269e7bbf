import ArgumentParser
import Foundation

/// The hub under test: one the tool starts as a child process (with its own embedded
/// PostgreSQL in a temporary folder), or one given by URL.
final class BenchTarget: @unchecked Sendable {
    let host: String
    let port: Int
    /// libpq URL of the hub's database, when the tool started the hub.
    let databaseURL: String?
    let cpuProbe: CPUProbe?
    private let process: Process?
    private let folder: URL?

    init(url: String) throws {
        guard let components = URLComponents(string: url), let host = components.host, let port = components.port else {
            throw ValidationError("--url must look like ws://host:port")
        }
        self.host = host
        self.port = port
        databaseURL = nil
        cpuProbe = nil
        process = nil
        folder = nil
    }

    private init(host: String, port: Int, databaseURL: String, process: Process, folder: URL, cpuProbe: CPUProbe) {
        self.host = host
        self.port = port
        self.databaseURL = databaseURL
        self.process = process
        self.folder = folder
        self.cpuProbe = cpuProbe
    }

    /// - Parameter executable: the hub to start; this executable when `nil`.
    static func startHub(extraArguments: [String], executable: String? = nil) throws -> BenchTarget {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hub-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable ?? "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = [
            "serve", "--data-dir", folder.path, "--port", "0", "--host", "127.0.0.1", "--auto-provision",
            "--log-level", "error",
        ] + extraArguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // The banner's first lines name the bound port.
        var port: Int?
        var buffer = ""
        let deadline = Date().addingTimeInterval(120)
        while port == nil, Date() < deadline {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            buffer += String(decoding: chunk, as: UTF8.self)
            if let range = buffer.range(of: "http://127.0.0.1:") {
                port = Int(buffer[range.upperBound...].prefix { $0.isNumber })
            }
        }
        guard let port else {
            process.terminate()
            throw ValidationError("the hub did not start: \(buffer)")
        }
        let cluster = folder.appendingPathComponent("postgres")
        return BenchTarget(
            host: "127.0.0.1", port: port, databaseURL: "host=\(cluster.path) port=5432 dbname=hub user=hub",
            process: process, folder: folder,
            cpuProbe: CPUProbe(hubPID: process.processIdentifier, postmasterPIDFile: cluster.appendingPathComponent("postmaster.pid")))
    }

    /// Stops the hub; its data folder goes too unless `keepingData`.
    func stop(keepingData: Bool = false) {
        guard let process else { return }
        process.interrupt()
        process.waitUntilExit()
        guard let folder else { return }
        if keepingData {
            print("kept the hub's data folder: \(folder.path) (start it with: hub serve --data-dir \(folder.path))")
        } else {
            try? FileManager.default.removeItem(at: folder)
        }
    }
}
