import Foundation
import HubIngest
import HubStorage
import HubTransport

/// Everything a hub is built from. The CLI fills it from flags and environment variables;
/// tests fill it directly.
public struct HubConfiguration: Sendable {
    /// The data folder: the embedded PostgreSQL cluster and the generated API token live here.
    public var dataDirectory = URL(fileURLWithPath: ".hub")
    /// An existing PostgreSQL server; `nil` runs a private cluster in the data folder.
    public var databaseURL: String?
    /// The full-rights API token; `nil` generates one into the data folder.
    public var apiToken: String?
    /// A read-only API token: it may subscribe on `/live` but not send commands.
    public var readToken: String?
    public var server = ServerConfiguration()
    /// Flush a batch once it holds this many readings…
    public var batchRows = 5_000
    /// …or once its oldest reading has waited this long.
    public var flushInterval: Duration = .milliseconds(20)
    /// Ingest writer threads, each with its own connection; a device's frames always go to
    /// the same one (`IngestQueue` lanes).
    public var ingestWriters = 2
    /// The ingest queue bound, in readings (see `IngestQueue` for the memory it implies).
    public var queueCapacityRows = 200_000
    /// Time partitions and retention (`PartitionManager`).
    public var storage = PartitionManager.Settings()
    /// Metric names per device and in all (`--max-metrics-per-device`, `--max-metrics`).
    public var metricLimits = MetricCatalog.Limits()
    /// The longest one REST or replay statement may run (`--statement-timeout`).
    public var statementTimeout: Duration = .seconds(10)
    /// How long startup waits for the database before giving up.
    public var databaseStartupTimeout: Duration = .seconds(30)
    /// Cluster mode (`--cluster`); `nil` runs one node on its own, with no NATS.
    public var cluster: ClusterConfiguration?

    /// Commands per device that are not final; more get 429.
    public var maxPendingCommands: Int {
        get { server.maxPendingCommandsPerDevice }
        set { server.maxPendingCommandsPerDevice = newValue }
    }

    public init() {}

    /// The embedded cluster's folder inside the data folder.
    public var clusterDirectory: URL { dataDirectory.appendingPathComponent("postgres") }
}
