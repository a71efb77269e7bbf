import Foundation
import HubStorage
import Logging
import Postgres

/// A throwaway PostgreSQL cluster for a test suite: created in a temporary folder when the
/// suite starts, removed when it ends. Each test gets a database of its own.
public final class TestCluster: Sendable {
    /// The cluster of the suite that runs (set by the live suite's trait).
    @TaskLocal public static var current: TestCluster?

    public let cluster: EmbeddedPostgres
    public let folder: URL
    private let counter = Counter()

    public init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("hub-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
        cluster = try EmbeddedPostgres(directory: folder.appendingPathComponent("pg"), logger: Logger(label: "test"))
        try cluster.start()
    }

    public func remove() {
        try? cluster.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    /// A fresh, empty database with the hub's schema (or none, with `schema: false`).
    public func makeDatabase(schema: Bool = true) throws -> String {
        let name = "test_\(counter.next())"
        let admin = try PostgresConnection(url: cluster.url)
        try admin.execute("CREATE DATABASE \(name)")
        let url = cluster.url.replacingOccurrences(of: "dbname=hub", with: "dbname=\(name)")
        if schema { try Schema.apply(on: PostgresConnection(url: url)) }
        return url
    }

    final class Counter: @unchecked Sendable {
        private var value = 0
        private let lock = NSLock()
        func next() -> Int { lock.withLock { value += 1; return value } }
    }
}
