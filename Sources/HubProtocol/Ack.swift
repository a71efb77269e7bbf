/// The durable acknowledgement `01 81 <u64 seq>`: every frame up to `seq` is committed.
public struct Ack: Hashable, Sendable {
    public static let kind: UInt8 = 0x81
    public static let size = 10

    public var seq: UInt64

    public init(seq: UInt64) { self.seq = seq }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = [FrameLimits.version, Self.kind]
        out.reserveCapacity(Self.size)
        out.appendBigEndian(seq)
        return out
    }

    /// Reads an ack; `nil` when the bytes are not exactly one.
    public init?(decoding bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.size, bytes[0] == FrameLimits.version, bytes[1] == Self.kind else {
            return nil
        }
        var reader = ByteReader(bytes)
        _ = reader.u16()
        seq = reader.u64()
    }

    public init?(decoding bytes: [UInt8]) {
        guard let ack = bytes.withUnsafeBytes({ Ack(decoding: $0) }) else { return nil }
        self = ack
    }
}
