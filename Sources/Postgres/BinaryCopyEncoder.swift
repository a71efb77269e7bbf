/// Builds the data of `COPY … FROM STDIN (FORMAT binary)`.
///
/// Append rows with `beginRow(fields:)` and one field call per column, then send `finish()`.
/// Timestamps are microseconds since 2000-01-01, PostgreSQL's binary epoch.
public struct BinaryCopyEncoder {
    /// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
    public static let postgresEpochOffsetMicros: Int64 = 946_684_800_000_000

    public private(set) var bytes: [UInt8]
    public private(set) var rowCount = 0

    public init(reservingCapacity capacity: Int = 1 << 16) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(contentsOf: Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00])
        append(UInt32(0))  // flags
        append(UInt32(0))  // header extension length
    }

    public mutating func beginRow(fields: Int) {
        append(UInt16(fields))
        rowCount += 1
    }

    public mutating func appendNull() { append(UInt32(bitPattern: -1)) }

    public mutating func appendInt16(_ value: Int16) {
        append(UInt32(2))
        append(UInt16(bitPattern: value))
    }

    public mutating func appendInt32(_ value: Int32) {
        append(UInt32(4))
        append(UInt32(bitPattern: value))
    }

    public mutating func appendInt64(_ value: Int64) {
        append(UInt32(8))
        append(UInt64(bitPattern: value))
    }

    public mutating func appendDouble(_ value: Double) {
        append(UInt32(8))
        append(value.bitPattern)
    }

    /// A `timestamptz` from microseconds since the Unix epoch.
    public mutating func appendTimestamp(unixMicros: Int64) {
        appendInt64(unixMicros - Self.postgresEpochOffsetMicros)
    }

    public mutating func appendText(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            append(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    public mutating func appendBytes(_ value: [UInt8]) {
        append(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// The finished stream, with its trailer.
    public consuming func finish() -> [UInt8] {
        append(UInt16(bitPattern: -1))
        return bytes
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
