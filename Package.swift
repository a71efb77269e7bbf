// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "telemetry-hub",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hub", targets: ["hub"]),
        .library(name: "HubProtocol", targets: ["HubProtocol"]),
        .library(name: "HubClient", targets: ["HubClient"]),
        .executable(name: "hub-fuzz", targets: ["HubFuzz"]),
        .executable(name: "hub-session-fuzz", targets: ["HubSessionFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // The wire codec: pure value types, no I/O. Shared by the server, clients and fuzzers.
        .target(name: "HubProtocol"),

        // The NATS core-protocol codec: pure value types, no I/O. A NATS client builds on it.
        .target(name: "NATS"),

        // A NATS core client on SwiftNIO: reconnects, resubscribes, request/reply, bounded buffers.
        .target(
            name: "NATSClient",
            dependencies: [
                "NATS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // libpq, wrapped as a system library, and a small Swift layer over it.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .target(name: "Postgres", dependencies: ["CLibPQ"]),

        // The ingest domain: devices, sessions, the bounded queue and the batcher.
        .target(
            name: "HubIngest",
            dependencies: [
                "HubProtocol",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // PostgreSQL storage: schema, the COPY writer, the device store, the embedded cluster.
        .target(
            name: "HubStorage",
            dependencies: [
                "HubProtocol",
                "HubIngest",
                "Postgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("schema.sql")]
        ),

        // The one-port NIO server: device sockets and HTTP.
        .target(
            name: "HubTransport",
            dependencies: [
                "HubProtocol",
                "HubIngest",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Page/index.html"), .copy("REST/openapi.json")]
        ),

        // A device client on NIO: used by the simulator, the load tool and the tests.
        .target(
            name: "HubClient",
            dependencies: [
                "HubProtocol",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),

        // The composition root: builds a whole hub from a configuration.
        .target(
            name: "Hub",
            dependencies: [
                "HubProtocol", "HubIngest", "HubStorage", "HubTransport", "Postgres", "NATS", "NATSClient",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),

        .executableTarget(
            name: "hub",
            dependencies: [
                "Hub", "HubClient", "HubProtocol", "HubIngest", "HubStorage", "Postgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),

        // libFuzzer targets (see README). `hub-fuzz` reads inputs as frames and messages,
        // with only the codec and the domain; `hub-session-fuzz` runs them as whole sessions
        // against an in-process hub core.
        .target(name: "FuzzDriver"),
        .executableTarget(name: "HubFuzz", dependencies: ["FuzzDriver", "HubProtocol", "HubIngest", "NATS"]),
        .executableTarget(
            name: "HubSessionFuzz",
            dependencies: [
                "FuzzDriver", "HubProtocol", "HubIngest", "HubTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // What the test targets share: hex bytes, the golden vectors, test doubles and a
        // throwaway PostgreSQL cluster.
        .target(
            name: "HubTestSupport",
            dependencies: [
                "HubProtocol", "HubIngest", "HubStorage", "Postgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/HubTestSupport"),

        .testTarget(name: "HubProtocolTests", dependencies: ["HubProtocol", "HubTestSupport"]),
        .testTarget(name: "NATSTests", dependencies: ["NATS"]),
        // Unit tests of the client's pure parts, and live tests against a throwaway nats-server.
        .testTarget(
            name: "NATSClientTests",
            dependencies: [
                "NATSClient", "NATS",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "HubIngestTests",
            dependencies: [
                "HubProtocol", "HubIngest", "HubTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "HubTransportTests",
            dependencies: [
                "HubTransport", "HubProtocol", "HubIngest", "HubTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .testTarget(
            name: "HubLiveTests",
            dependencies: [
                "Hub", "HubClient", "HubProtocol", "HubIngest", "HubStorage", "HubTestSupport", "Postgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
