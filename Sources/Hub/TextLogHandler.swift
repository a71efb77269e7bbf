import Foundation
import HubIngest
import Logging

/// Text log lines for people (`--log-format text`, the default):
/// `2026-12-01T10:00:00.000Z info hub: device connected connection=… device=…`.
///
/// Every interpolated value (the message and each metadata value) has its control
/// characters escaped (`\n`, `\u{1B}`, …), so nothing a client sends can forge a log line
/// or drive a terminal.
public struct TextLogHandler: LogHandler {
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

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        var line = "\(JSONLogHandler.timestamp(clock)) \(event.level.rawValue) \(label): "
        line += Self.escaped(event.message.description)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(Self.escaped(key))=\(Self.escaped(value.description))"
        }
        write(line + "\n")
    }

    /// `text` with every control character (C0, DEL, C1) and backslash escaped.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) || $0 == "\\" }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value):
                out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
