import HubProtocol

/// Accepted frames on their way to another node's dashboards (cluster mode): one message
/// per destination node per event-loop pass, however many devices and frames it carries.
///
/// Layout, big-endian: `u8` version (1), then per device: `i32` storage key, `u8` id length,
/// the id, `u16` frame count, and per frame `i64` receive time (µs) and `u32` length before
/// the frame in its wire encoding (contract section 2). The writer does not bound a
/// message: its user takes one when `bytes` has grown to its bound.
public enum RemoteFrames {
    public static let version: UInt8 = 1

    /// One device's frames in a message.
    public struct Entry: Sendable {
        public let device: DeviceRecordRef
        public let frames: [AcceptedFrame]
    }

    /// Builds messages.
    public struct Writer: Sendable {
        public private(set) var bytes: [UInt8] = [RemoteFrames.version]

        public init() {}

        public var isEmpty: Bool { bytes.count == 1 }

        /// Appends a device's frames, each given with its wire encoding.
        public mutating func append(_ device: DeviceRecordRef, frames: [(frame: AcceptedFrame, wire: [UInt8])]) {
            guard !frames.isEmpty else { return }
            let id = Array(device.id.utf8.prefix(255))
            for start in stride(from: 0, to: frames.count, by: Int(UInt16.max)) {
                let part = frames[start..<min(frames.count, start + Int(UInt16.max))]
                put(UInt32(bitPattern: device.key))
                bytes.append(UInt8(id.count))
                bytes += id
                put(UInt16(part.count))
                for (frame, wire) in part {
                    put(UInt64(bitPattern: frame.receivedAtMicros))
                    put(UInt32(wire.count))
                    bytes += wire
                }
            }
        }

        /// The message so far, and an empty writer for the next.
        public mutating func take() -> [UInt8] {
            defer { bytes = [RemoteFrames.version] }
            return bytes
        }

        private mutating func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
        }
    }

    /// The entries of a message; `nil` if it is not one (another version, cut short, an id
    /// that is not UTF-8, or a frame that does not decode).
    public static func decode(_ bytes: [UInt8]) -> [Entry]? {
        var reader = Reader(bytes: bytes)
        guard reader.u8() == version else { return nil }
        var entries: [Entry] = []
        while !reader.atEnd {
            guard let key = reader.u32(), let idLength = reader.u8(), let idBytes = reader.take(Int(idLength)),
                let id = String(validating: idBytes, as: UTF8.self), let count = reader.u16()
            else { return nil }
            var frames: [AcceptedFrame] = []
            frames.reserveCapacity(min(Int(count), reader.remaining / 12))  // 12: the least a frame takes here
            for _ in 0..<count {
                guard let received = reader.u64(), let length = reader.u32(), let wire = reader.take(Int(length)),
                    let frame = try? TelemetryFrame(decoding: wire, receivedAtMicros: Int64(bitPattern: received))
                else { return nil }
                frames.append(AcceptedFrame(frame: frame, receivedAtMicros: Int64(bitPattern: received)))
            }
            entries.append(Entry(device: DeviceRecordRef(key: Int32(bitPattern: key), id: id), frames: frames))
        }
        return entries
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index >= bytes.count }
        var remaining: Int { bytes.count - index }

        mutating func take(_ count: Int) -> [UInt8]? {
            guard count >= 0, bytes.count - index >= count else { return nil }
            defer { index += count }
            return Array(bytes[index..<index + count])
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard let raw = take(MemoryLayout<T>.size) else { return nil }
            return raw.reduce(T(0)) { $0 << 8 | T($1) }
        }

        mutating func u8() -> UInt8? { integer(UInt8.self) }
        mutating func u16() -> UInt16? { integer(UInt16.self) }
        mutating func u32() -> UInt32? { integer(UInt32.self) }
        mutating func u64() -> UInt64? { integer(UInt64.self) }
    }
}
