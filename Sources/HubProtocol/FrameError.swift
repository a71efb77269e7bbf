/// Why a frame was refused, in words safe to send back to the device.
public struct FrameError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case empty
        case truncatedHeader = "truncated_header"
        case unsupportedVersion = "unsupported_version"
        case unknownKind = "unknown_kind"
        case seqOutOfRange = "seq_out_of_range"
        case negativeBaseTime = "negative_base_time"
        case noReadings = "no_readings"
        case truncatedReading = "truncated_reading"
        case badName = "bad_metric_name"
        case unknownValueType = "unknown_value_type"
        case badBool = "bad_bool"
        case nonFiniteFloat = "non_finite_float"
        case stringTooLong = "string_too_long"
        case badString = "bad_string"
        case timeOutOfRange = "time_out_of_range"
        case trailingBytes = "trailing_bytes"
    }

    public let code: Code
    /// The frame's sequence number, when its header is well formed (version 1, kind 0x01,
    /// `seq` in range); `nil` otherwise. The contract reports it in `rejected`.
    public let seq: UInt64?
    private let detail: String

    init(_ code: Code, seq: UInt64?, _ detail: String) {
        self.code = code
        self.seq = seq
        self.detail = detail
    }

    /// A short reason, e.g. `bad_metric_name: reading 1: byte 0x20 not allowed`.
    public var description: String { "\(code.rawValue): \(detail)" }
}
