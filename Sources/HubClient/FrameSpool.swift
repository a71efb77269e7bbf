import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A device's unacked frames on disk, so a reboot loses none of them. The same file format
/// as the Python kit's spool (integers big-endian):
///
///     header   "HUBSPOOL" u8 version=1                          9 bytes
///     record   u8 kind | u32 length | payload | u32 crc32        crc32 over kind, length, payload
///       kind "F"  payload = one encoded telemetry frame (its seq is bytes 2..9)
///       kind "A"  payload = u64 seq: every frame up to it is acked
///
/// Frames are appended before they are sent (fsynced when `sync` is on); acks are only
/// written. Reading stops at the first torn or corrupt record. The file is rewritten
/// (temporary file, fsync, rename) on open and when it is larger than `compactBytes` and at
/// least half of it is acked frames.
final class FrameSpool {
    struct NotASpool: Error, CustomStringConvertible {
        let path: String
        var description: String { "\(path) is not a device spool file" }
    }

    static let magic: [UInt8] = Array("HUBSPOOL".utf8) + [1]

    private let path: String
    private let sync: Bool
    private let compactBytes: Int
    private var descriptor: Int32 = -1
    private var fileBytes = 0
    private var liveBytes = 0

    /// - Parameter compactBytes: rewrite the file above this size (when half of it is acked).
    init(path: String, sync: Bool, compactBytes: Int = 1 << 20) {
        self.path = path
        self.sync = sync
        self.compactBytes = compactBytes
    }

    /// The unacked frames the file holds, in order, and its ack mark; nothing if it does not exist.
    func load() throws -> (frames: [(seq: UInt64, bytes: [UInt8])], acked: UInt64) {
        guard let data = FileManager.default.contents(atPath: path) else { return ([], 0) }
        let bytes = [UInt8](data)
        guard bytes.starts(with: Self.magic) else { throw NotASpool(path: path) }
        var frames: [(seq: UInt64, bytes: [UInt8])] = []
        var acked: UInt64 = 0
        var position = Self.magic.count
        while position + 9 <= bytes.count {
            let kind = bytes[position]
            let length = Int(Self.integer(bytes, at: position + 1, size: 4))
            let end = position + 5 + length
            guard end + 4 <= bytes.count, UInt32(Self.integer(bytes, at: end, size: 4)) == CRC32.checksum(bytes[position..<end]) else { break }
            let payload = Array(bytes[(position + 5)..<end])
            if kind == UInt8(ascii: "F"), length >= 10 {
                frames.append((Self.integer(payload, at: 2, size: 8), payload))
            } else if kind == UInt8(ascii: "A"), length == 8 {
                acked = max(acked, Self.integer(payload, at: 0, size: 8))
            }
            position = end + 4
        }
        return (frames.filter { $0.seq > acked }, acked)
    }

    /// Rewrites the file as the header, the ack mark and `frames`, then keeps it open for appends.
    func rewrite(frames: some Sequence<[UInt8]>, acked: UInt64) throws {
        if descriptor >= 0 { close(descriptor) }
        var out = Self.magic + Self.record(kind: "A", payload: Self.bigEndian(acked))
        liveBytes = 0
        for frame in frames {
            let record = Self.record(kind: "F", payload: frame)
            out += record
            liveBytes += record.count
        }
        let temporary = path + ".tmp"
        let file = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard file >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        try Self.writeAll(file, out)
        fsync(file)
        close(file)
        guard rename(temporary, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        descriptor = open(path, O_WRONLY | O_APPEND)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        fileBytes = out.count
    }

    func append(frame: [UInt8]) throws {
        let record = Self.record(kind: "F", payload: frame)
        try Self.writeAll(descriptor, record)
        if sync { fsync(descriptor) }
        fileBytes += record.count
        liveBytes += record.count
    }

    /// Records an ack; `remaining` is what is still unacked, for compaction.
    func ack(_ seq: UInt64, dropped: [[UInt8]], remaining: @autoclosure () -> [[UInt8]]) throws {
        for frame in dropped { liveBytes -= 9 + frame.count }
        if fileBytes >= compactBytes && liveBytes * 2 <= fileBytes {
            try rewrite(frames: remaining(), acked: seq)
        } else {
            let record = Self.record(kind: "A", payload: Self.bigEndian(seq))
            try Self.writeAll(descriptor, record)
            fileBytes += record.count
        }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    private static func record(kind: Character, payload: [UInt8]) -> [UInt8] {
        var record = [UInt8(ascii: kind.unicodeScalars.first!)] + bigEndian(UInt32(payload.count)) + payload
        record += bigEndian(CRC32.checksum(record[...]))
        return record
    }

    private static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    private static func integer(_ bytes: [UInt8], at offset: Int, size: Int) -> UInt64 {
        bytes[offset..<(offset + size)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func writeAll(_ file: Int32, _ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
            guard count > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            written += count
        }
    }
}

/// CRC-32 (IEEE), as zlib's `crc32`.
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        (0..<8).reduce(UInt32(index)) { crc, _ in crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        ~bytes.reduce(~UInt32(0)) { crc, byte in table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    }
}
