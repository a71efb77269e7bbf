/// Why a NATS server URL was refused.
///
/// The description names the broken rule, never the URL itself: it may carry credentials.
public struct NATSConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The URL does not start with `nats://`.
        case unsupportedScheme = "unsupported_scheme"
        /// No host between `nats://` and the port.
        case missingHost = "missing_host"
        /// The port is not a number from 1 to 65535.
        case invalidPort = "invalid_port"
        /// Credentials, a path, a query or several servers: not supported by this client.
        case unsupportedPart = "unsupported_part"
    }

    public let code: Code

    init(_ code: Code) { self.code = code }

    public var description: String {
        switch code {
        case .unsupportedScheme: "unsupported_scheme: a NATS URL must look like nats://host:port"
        case .missingHost: "missing_host: the NATS URL has no host"
        case .invalidPort: "invalid_port: the NATS URL's port must be a number from 1 to 65535"
        case .unsupportedPart: "unsupported_part: credentials, paths, queries and server lists are not supported"
        }
    }
}
