import Metrics
import Prometheus

/// The process's metrics: swift-metrics, backed by swift-prometheus, served at `/metrics`.
public enum HubMetrics {
    /// Everything every hub in this process counts.
    public static let registry = PrometheusCollectorRegistry()

    private static let bootstrapped: Void = {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }()

    /// Readings queued or being written, sampled at each scrape.
    static let queueDepth = Gauge(label: "hub_ingest_queue_depth")

    /// The queue's bound in readings (`--queue-rows`), so alerts can take the ratio.
    static let queueCapacity = Gauge(label: "hub_ingest_queue_capacity")

    /// 1 while the checks of `/readyz` that need no query pass: devices loaded, the
    /// cluster connected (if any), database writes succeeding, ingest not stalled for 10 s.
    static let ready = Gauge(label: "hub_ready")

    /// Installs the Prometheus backend, once per process. The executable (and a test run)
    /// calls it before it builds a hub: metrics made before it count nowhere.
    public static func bootstrap() {
        _ = bootstrapped
    }

    /// The Prometheus text exposition of every metric.
    static func text() -> String {
        registry.emitToString()
    }
}
