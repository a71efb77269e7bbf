/// WebSocket frames as bytes on the wire (RFC 6455), for tests that feed and read sockets.

/// A client frame as a device sends it: FIN, the opcode, masked.
public func maskedFrame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0x80 | opcode]
    if payload.count < 126 {
        bytes.append(0x80 | UInt8(payload.count))
    } else {
        bytes += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
    }
    let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
    bytes += mask
    bytes += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    return bytes
}

/// The server's frames in `bytes` (unmasked): opcode and payload each.
public func serverFrames(_ bytes: [UInt8]) -> [(opcode: UInt8, payload: [UInt8])] {
    var frames: [(UInt8, [UInt8])] = []
    var index = 0
    while index + 2 <= bytes.count {
        let opcode = bytes[index] & 0x0f
        var length = Int(bytes[index + 1] & 0x7f)
        index += 2
        if length == 126 {
            length = Int(bytes[index]) << 8 | Int(bytes[index + 1])
            index += 2
        }
        frames.append((opcode, Array(bytes[index..<min(bytes.count, index + length)])))
        index += length
    }
    return frames
}
