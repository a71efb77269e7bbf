/// One telemetry frame: a device's numbered batch of readings (contract section 2).
///
/// A frame is a plain value; `init(decoding:receivedAtMicros:)` and `encoded()` convert it
/// from and to its exact wire bytes.
public struct TelemetryFrame: Hashable, Sendable {
    /// The frame's sequence number, `1 ... 2^63-1`.
    public var seq: UInt64
    /// Microseconds since the Unix epoch; `0` means "the hub's receive time".
    public var baseTime: Int64
    public var readings: [Reading]

    public init(seq: UInt64, baseTime: Int64, readings: [Reading]) {
        self.seq = seq
        self.baseTime = baseTime
        self.readings = readings
    }

    /// The time base readings are offset from: `baseTime`, or the receive time when it is `0`.
    public func effectiveBase(receivedAtMicros: Int64) -> Int64 {
        baseTime == 0 ? receivedAtMicros : baseTime
    }
}

/// One metric value at one time inside a frame.
public struct Reading: Hashable, Sendable {
    public var name: String
    /// Added to the frame's base time to give this reading's time.
    public var offsetMicros: Int32
    public var value: Value

    public init(name: String, offsetMicros: Int32 = 0, value: Value) {
        self.name = name
        self.offsetMicros = offsetMicros
        self.value = value
    }
}

/// A reading's typed value.
public enum Value: Hashable, Sendable {
    case f64(Double)
    case i64(Int64)
    case bool(Bool)
    case string(String)

    /// The value-type byte on the wire.
    public var typeCode: UInt8 {
        switch self {
        case .f64: 1
        case .i64: 2
        case .bool: 3
        case .string: 4
        }
    }
}

/// The limits the contract sets on frames.
public enum FrameLimits {
    public static let version: UInt8 = 1
    public static let kindTelemetry: UInt8 = 0x01
    public static let headerSize = 20
    public static let maxSeq: UInt64 = UInt64(Int64.max)
    public static let maxNameLength = 64
    public static let maxStringLength = 1024
    /// The fewest bytes a reading takes: name length, a one-byte name, offset, type, bool.
    public static let minReadingSize = 8
    /// The first microsecond after the end of year 9999 UTC: reading times must be below it.
    public static let endOfTimeMicros: Int64 = 253_402_300_800_000_000

    /// Whether `byte` may appear in a metric name: `[A-Za-z0-9._/:-]`.
    @inlinable
    public static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "/"), UInt8(ascii: ":"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}
