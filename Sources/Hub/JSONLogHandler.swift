import Foundation
import HubIngest
import HubProtocol
import Logging

/// One JSON object per line: `ts`, `level`, `label`, `message`, then the metadata
/// (`device`, `connection`, …) as string fields. For log shippers (`--log-format json`).
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let write: @Sendable (String) -> Void
    private let clock: any HubClock

    /// - Parameters:
    ///   - clock: stamps each line.
    ///   - write: receives each line, with its newline (default: standard error).
    public init(
        label: String, clock: any HubClock = SystemClock(), write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError
    ) {
        self.label = label
        self.clock = clock
        self.write = write
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        var line = #"{"ts":\#(JSON.quote(Self.timestamp(clock))),"level":"\#(event.level.rawValue)","label":\#(JSON.quote(label)),"message":\#(JSON.quote(event.message.description))"#
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += #",\#(JSON.quote(key)):\#(JSON.quote(value.description))"#
        }
        write(line + "}\n")
    }

    /// The clock's wall time as ISO 8601 with milliseconds.
    static func timestamp(_ clock: any HubClock) -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date(timeIntervalSince1970: Double(clock.wallMicros()) / 1e6))
    }
}
