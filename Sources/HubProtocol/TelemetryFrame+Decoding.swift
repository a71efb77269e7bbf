extension TelemetryFrame {
    /// Decodes and validates one frame.
    ///
    /// - Parameter receivedAtMicros: the hub's receive time; reading times of a frame with
    ///   `base_time = 0` are checked against it.
    /// - Throws: `FrameError` naming the first rule the bytes break; never traps.
    public init(decoding bytes: UnsafeRawBufferPointer, receivedAtMicros: Int64) throws(FrameError) {
        guard !bytes.isEmpty else { throw FrameError(.empty, seq: nil, "no bytes") }
        func truncated(_ seq: UInt64?) -> FrameError {
            FrameError(.truncatedHeader, seq: seq, "\(bytes.count) of \(FrameLimits.headerSize) header bytes")
        }
        var reader = ByteReader(bytes)
        let version = reader.u8()
        guard version == FrameLimits.version else {
            throw FrameError(.unsupportedVersion, seq: nil, "version \(version)")
        }
        guard bytes.count >= 2 else { throw truncated(nil) }
        let kind = reader.u8()
        guard kind == FrameLimits.kindTelemetry else {
            throw FrameError(.unknownKind, seq: nil, "kind \(kind)")
        }
        guard bytes.count >= 10 else { throw truncated(nil) }
        let rawSeq = reader.u64()
        guard rawSeq >= 1, rawSeq <= FrameLimits.maxSeq else {
            throw FrameError(.seqOutOfRange, seq: nil, "seq \(rawSeq)")
        }
        guard bytes.count >= FrameLimits.headerSize else { throw truncated(rawSeq) }
        let seq = rawSeq
        let baseTime = Int64(bitPattern: reader.u64())
        guard baseTime >= 0 else { throw FrameError(.negativeBaseTime, seq: seq, "base_time \(baseTime)") }
        let count = Int(reader.u16())
        guard count >= 1 else { throw FrameError(.noReadings, seq: seq, "count 0") }

        let base = baseTime == 0 ? receivedAtMicros : baseTime
        var readings: [Reading] = []
        // Reserve by the bytes that are there, not by the declared count: a 20-byte frame
        // declaring 65,535 readings must not reserve megabytes. The smallest reading
        // (a one-byte name and a bool) takes 8 bytes.
        readings.reserveCapacity(min(count, reader.remaining / FrameLimits.minReadingSize))
        for index in 0..<count {
            readings.append(try Self.decodeReading(&reader, index: index, base: base, seq: seq))
        }
        guard reader.remaining == 0 else {
            throw FrameError(.trailingBytes, seq: seq, "\(reader.remaining) bytes after reading \(count)")
        }
        self.init(seq: seq, baseTime: baseTime, readings: readings)
    }

    /// Decodes a frame held in an array.
    public init(decoding bytes: [UInt8], receivedAtMicros: Int64) throws(FrameError) {
        let result: Result<TelemetryFrame, FrameError> = bytes.withUnsafeBytes { raw in
            do throws(FrameError) {
                return .success(try TelemetryFrame(decoding: raw, receivedAtMicros: receivedAtMicros))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }

    private static func decodeReading(
        _ reader: inout ByteReader, index: Int, base: Int64, seq: UInt64
    ) throws(FrameError) -> Reading {
        func fail(_ code: FrameError.Code, _ detail: String) -> FrameError {
            FrameError(code, seq: seq, "reading \(index + 1): \(detail)")
        }
        guard reader.remaining >= 1 else { throw fail(.truncatedReading, "missing") }
        let nameLength = Int(reader.u8())
        guard nameLength >= 1, nameLength <= FrameLimits.maxNameLength else {
            throw fail(.badName, "name length \(nameLength)")
        }
        guard reader.remaining >= nameLength + 5 else { throw fail(.truncatedReading, "cut short") }
        let nameBytes = reader.bytes(nameLength)
        if let bad = nameBytes.first(where: { !FrameLimits.isNameByte($0) }) {
            throw fail(.badName, "byte 0x\(String(bad, radix: 16)) not allowed")
        }
        let name = String(decoding: nameBytes, as: UTF8.self)
        let offset = Int32(bitPattern: reader.u32())
        let (time, overflow) = base.addingReportingOverflow(Int64(offset))
        guard !overflow, time >= 0, time < FrameLimits.endOfTimeMicros else {
            throw fail(.timeOutOfRange, "time outside 1970 ... 9999")
        }
        let type = reader.u8()
        let value: Value
        switch type {
        case 1:
            guard reader.remaining >= 8 else { throw fail(.truncatedReading, "f64 cut short") }
            let double = Double(bitPattern: reader.u64())
            guard double.isFinite else { throw fail(.nonFiniteFloat, "f64 is not finite") }
            value = .f64(double)
        case 2:
            guard reader.remaining >= 8 else { throw fail(.truncatedReading, "i64 cut short") }
            value = .i64(Int64(bitPattern: reader.u64()))
        case 3:
            guard reader.remaining >= 1 else { throw fail(.truncatedReading, "bool cut short") }
            let byte = reader.u8()
            guard byte <= 1 else { throw fail(.badBool, "bool byte \(byte)") }
            value = .bool(byte == 1)
        case 4:
            guard reader.remaining >= 2 else { throw fail(.truncatedReading, "string length cut short") }
            let length = Int(reader.u16())
            guard length <= FrameLimits.maxStringLength else {
                throw fail(.stringTooLong, "\(length) bytes")
            }
            guard reader.remaining >= length else { throw fail(.truncatedReading, "string cut short") }
            let stringBytes = reader.bytes(length)
            guard !stringBytes.contains(0) else { throw fail(.badString, "contains U+0000") }
            guard let string = String(validating: stringBytes, as: UTF8.self) else {
                throw fail(.badString, "not UTF-8")
            }
            value = .string(string)
        default:
            throw fail(.unknownValueType, "value type \(type)")
        }
        return Reading(name: name, offsetMicros: offset, value: value)
    }
}

/// A bounds-checked-by-caller big-endian reader over raw bytes.
struct ByteReader {
    private let bytes: UnsafeRawBufferPointer
    private var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func u8() -> UInt8 {
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }

    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }

    mutating func u64() -> UInt64 { UInt64(u32()) << 32 | UInt64(u32()) }

    mutating func bytes(_ count: Int) -> UnsafeRawBufferPointer {
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + count])
    }
}
