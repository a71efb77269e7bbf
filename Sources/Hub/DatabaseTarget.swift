import Foundation
import HubIngest
import HubStorage
import Logging
import Postgres

/// The database a hub or a CLI command talks to: a server given by URL, or the private
/// cluster in the data folder, started if needed.
public final class DatabaseTarget: Sendable {
    public let url: String
    /// The embedded cluster, when this target started or adopted one.
    public let cluster: EmbeddedPostgres?
    private let startedCluster: Bool
    /// Whether the schema was applied at start. A server given by URL may be unreachable
    /// then: the hub starts anyway and applies it once the server answers.
    public let reachableAtStart: Bool

    /// Resolves the target and applies the schema. A server given by URL gets one try
    /// (`reachableAtStart` tells how it went); the embedded cluster must start within `timeout`.
    public init(
        databaseURL: String?, clusterDirectory: URL, logger: Logger, timeout: Duration = .seconds(30), clock: any HubClock = SystemClock()
    ) throws {
        if let databaseURL {
            url = databaseURL
            cluster = nil
            startedCluster = false
            reachableAtStart = Self.applySchemaIfReachable(url: databaseURL, logger: logger)
            return
        } else {
            let cluster = try EmbeddedPostgres(directory: clusterDirectory, logger: logger)
            startedCluster = try cluster.start()
            self.cluster = cluster
            url = cluster.url
        }
        do {
            try Schema.apply(on: Self.connect(url: url, timeout: timeout, clock: clock, logger: logger))
        } catch {
            if startedCluster { try? cluster?.stop() }
            throw error
        }
        reachableAtStart = true
    }

    /// One try at applying the schema. - Returns: false if the server did not answer.
    private static func applySchemaIfReachable(url: String, logger: Logger) -> Bool {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection(url: url)
        } catch {
            logger.warning(
                "database unreachable at start; serving anyway: /readyz says not ready and devices get 503 until it answers",
                metadata: ["error": "\(error)"])
            return false
        }
        do {
            try Schema.apply(on: connection)
            return true
        } catch {
            logger.warning("could not apply the schema at start; retrying once the database answers", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Stops the embedded cluster if this target started it (or `force`).
    public func stop(force: Bool = false) {
        guard let cluster, startedCluster || force else { return }
        try? cluster.stop()
    }

    /// A human description for banners, without credentials.
    public var description: String {
        if let cluster { return "embedded PostgreSQL in \(cluster.directory.path)" }
        return Self.redact(url)
    }

    /// Connects, retrying until `timeout` while the server is starting or unreachable.
    public static func connect(url: String, timeout: Duration, clock: any HubClock = SystemClock(), logger: Logger) throws -> PostgresConnection {
        let deadline = clock.uptimeNanos() + UInt64(timeout.components.seconds) * 1_000_000_000
        var warned = false
        while true {
            do {
                return try PostgresConnection(url: url)
            } catch {
                guard clock.uptimeNanos() < deadline else { throw error }
                if !warned {
                    logger.warning("database not reachable yet; retrying", metadata: ["error": "\(error)"])
                    warned = true
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
    }

    /// A URL with its password replaced by `***`.
    static func redact(_ url: String) -> String {
        guard let at = url.firstIndex(of: "@"), let scheme = url.range(of: "://") else { return url }
        let credentials = url[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return url.replacingCharacters(in: url.index(after: colon)..<at, with: "***")
    }
}
