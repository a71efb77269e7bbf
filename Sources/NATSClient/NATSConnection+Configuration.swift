extension NATSConnection {
    /// Where to connect, and the timings and bounds of one connection.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Sent as `CONNECT`'s `name`: how the server's monitoring shows this client.
        public var name: String
        /// The first reconnect delay's ceiling; it doubles per failed attempt (full jitter).
        public var minReconnectDelayNanos: UInt64 = 50_000_000
        /// The largest reconnect delay.
        public var maxReconnectDelayNanos: UInt64 = 2_000_000_000
        /// How often the client sends `PING` while connected.
        public var pingIntervalNanos: UInt64 = 2_000_000_000
        /// A ping timer that finds this many `PING`s unanswered closes the connection as
        /// stale, and the client reconnects.
        public var maxPingsOutstanding: Int = 2
        /// The bound of the TCP connect, and separately of the handshake after it (`INFO`,
        /// then the `PONG` to the handshake's `PING`).
        public var connectTimeoutNanos: UInt64 = 2_000_000_000
        /// The bound of bytes queued for the socket while it is disconnected or not writable.
        /// A publish that would go past it is dropped and counted in `droppedPublishes`.
        public var maxPendingBytes: Int = 8 << 20
        /// The bound of requests waiting for their reply; `request` past it fails at once
        /// with `tooManyPending`. Each holds a completion and a timer (about 200 bytes).
        public var maxPendingRequests: Int = 10_000

        public init(host: String, port: Int, name: String) {
            self.host = host
            self.port = port
            self.name = name
        }

        /// Parses `nats://host:port`; the port defaults to 4222, an IPv6 host goes in brackets.
        ///
        /// - Throws: `NATSConfigurationError` for another scheme, a missing host, a bad port,
        ///   or credentials, a path or a query. Its text never repeats the URL.
        public init(url: String, name: String) throws(NATSConfigurationError) {
            let scheme = "nats://"
            guard url.lowercased().hasPrefix(scheme) else { throw NATSConfigurationError(.unsupportedScheme) }
            var rest = Substring(url.dropFirst(scheme.count))
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            guard !rest.contains(where: { "@/?#,".contains($0) }) else { throw NATSConfigurationError(.unsupportedPart) }
            let host: Substring
            let portText: Substring?
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw NATSConfigurationError(.missingHost) }
                host = rest[rest.index(after: rest.startIndex)..<close]
                let after = rest[rest.index(after: close)...]
                guard after.isEmpty || after.hasPrefix(":") else { throw NATSConfigurationError(.invalidPort) }
                portText = after.isEmpty ? nil : after.dropFirst()
            } else if let colon = rest.firstIndex(of: ":") {
                host = rest[..<colon]
                portText = rest[rest.index(after: colon)...]
            } else {
                host = rest
                portText = nil
            }
            guard !host.isEmpty else { throw NATSConfigurationError(.missingHost) }
            var port = 4222
            if let portText {
                guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(portText), (1...65_535).contains(number) else {
                    throw NATSConfigurationError(.invalidPort)
                }
                port = number
            }
            self.init(host: String(host), port: port, name: name)
        }
    }
}
