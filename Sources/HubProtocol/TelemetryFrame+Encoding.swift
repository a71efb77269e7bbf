extension TelemetryFrame {
    /// The frame's exact wire bytes. The frame is not validated: encode what you decoded, or
    /// what you built within the contract's limits.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(FrameLimits.headerSize + readings.count * 24)
        out.append(FrameLimits.version)
        out.append(FrameLimits.kindTelemetry)
        out.appendBigEndian(seq)
        out.appendBigEndian(UInt64(bitPattern: baseTime))
        out.appendBigEndian(UInt16(truncatingIfNeeded: readings.count))
        for reading in readings {
            let name = Array(reading.name.utf8)
            out.append(UInt8(truncatingIfNeeded: name.count))
            out.append(contentsOf: name)
            out.appendBigEndian(UInt32(bitPattern: reading.offsetMicros))
            out.append(reading.value.typeCode)
            switch reading.value {
            case .f64(let double): out.appendBigEndian(double.bitPattern)
            case .i64(let int): out.appendBigEndian(UInt64(bitPattern: int))
            case .bool(let bool): out.append(bool ? 1 : 0)
            case .string(let string):
                let utf8 = Array(string.utf8)
                out.appendBigEndian(UInt16(truncatingIfNeeded: utf8.count))
                out.append(contentsOf: utf8)
            }
        }
        return out
    }
}

extension Array where Element == UInt8 {
    @inlinable
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
