import HubIngest
import HubProtocol
import NATS

/// The parser fuzz target: one input, read as a device's binary frame, as a `/live` text
/// message, as the contract's text message its `type` names, as a NATS server's stream,
/// and as frames forwarded from another cluster node. It links only the codecs and the
/// domain. Nothing may crash; a frame that decodes must encode back to exactly its
/// bytes, and a message that reads must read back the same after the hub writes it.
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if let frame = try? TelemetryFrame(decoding: bytes, receivedAtMicros: 1_763_769_600_000_000) {
        precondition(frame.encoded() == Array(bytes), "a decoded frame does not encode back to its bytes")
    }
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? LiveClientMessage(text: text, limits: .init(maxBytes: 65_536))
    // As readers do: the envelope's type picks the message type.
    if case let type?? = MessageEnvelope.read(text)?.type {
        for check in MessageChecks.byType[type] ?? [] { check(text) }
    }
    checkNATS(Array(bytes))
    checkRemoteFrames(Array(bytes))
    return 0
}

/// Read as a message of frames from another node: what decodes, written again with each
/// frame's own encoding, must decode to the same entries; and, when no entry is empty (the
/// writer leaves those out), to exactly the same bytes.
private func checkRemoteFrames(_ bytes: [UInt8]) {
    guard let entries = RemoteFrames.decode(bytes) else { return }
    var writer = RemoteFrames.Writer()
    for entry in entries {
        writer.append(entry.device, frames: entry.frames.map { (frame: $0, wire: $0.frame.encoded()) })
    }
    let written = writer.take()
    let expected = entries.filter { !$0.frames.isEmpty }
    guard let again = RemoteFrames.decode(written) else {
        fatalError("remote frames that decode do not decode once written again")
    }
    // Frames compare by their bytes: a NaN reading is not equal to itself.
    func same(_ a: RemoteFrames.Entry, _ b: RemoteFrames.Entry) -> Bool {
        a.device.key == b.device.key && a.device.id == b.device.id
            && a.frames.map(\.frame.seq) == b.frames.map(\.frame.seq)
            && a.frames.map(\.receivedAtMicros) == b.frames.map(\.receivedAtMicros)
            && a.frames.map { $0.frame.encoded() } == b.frames.map { $0.frame.encoded() }
    }
    precondition(
        again.count == expected.count && zip(again, expected).allSatisfy(same),
        "remote frames do not decode to the same entries once written again")
    precondition(
        expected.count < entries.count || written == bytes, "remote frames do not write back to exactly their bytes")
}

/// Read as what a NATS server sends: all at once, and cut in two where the first byte
/// says, the parser must give the same operations (or fail the same way).
private func checkNATS(_ bytes: [UInt8]) {
    func parse(_ chunks: [ArraySlice<UInt8>]) -> (ops: [ServerOp], error: NATSProtocolError?) {
        var parser = NATSParser(maxPayloadLength: 4_096)
        var ops: [ServerOp] = []
        for chunk in chunks {
            parser.append(chunk)
            do {
                while let op = try parser.next() { ops.append(op) }
            } catch {
                return (ops, error)
            }
        }
        return (ops, nil)
    }
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    let whole = parse([bytes[...]])
    let split = parse([bytes[..<cut], bytes[cut...]])
    precondition(whole.ops == split.ops && whole.error == split.error, "the NATS parser depends on how the bytes were cut")
}

/// Reads `text` as one message type; what reads must be written and read back unchanged.
private func roundTrip<M: HubMessage>(_: M.Type) -> @Sendable (String) -> Void {
    { text in
        guard let message = try? M.decode(text) else { return }
        let written = message.json
        precondition((try? M.decode(written)) == message, "a \(M.type) message does not read back as written: \(written)")
    }
}

private enum MessageChecks {
    /// The checks of each `type` (`command` goes both ways: to a device, and from a dashboard).
    static let byType: [String: [@Sendable (String) -> Void]] = Dictionary(
        grouping: [
            check(Welcome.self), check(Rejected.self), check(DeviceCommand.self), check(CommandAck.self), check(CommandResult.self),
            check(ErrorMessage.self), check(Hello.self), check(Subscribed.self), check(Lagged.self), check(Presence.self),
            check(ReplayDone.self), check(CommandStatusMessage.self), check(LiveTelemetry.self), check(Subscribe.self),
            check(Unsubscribe.self), check(LiveCommand.self),
        ], by: \.type
    ).mapValues { $0.map(\.run) }

    private static func check<M: HubMessage>(_ type: M.Type) -> (type: String, run: @Sendable (String) -> Void) {
        (M.type, roundTrip(type))
    }
}
