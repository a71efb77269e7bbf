import HubIngest
import HubProtocol
import HubTestSupport
import Testing

@Suite("Remote frames: the codec for frames forwarded between cluster nodes")
struct RemoteFramesTests {
    let now: Int64 = 1_763_769_600_000_000

    /// What a decoded entry carries, comparable as a whole.
    struct Flat: Equatable {
        var device: DeviceRecordRef
        var frames: [TelemetryFrame]
        var received: [Int64]
    }

    func flat(_ entries: [RemoteFrames.Entry]?) -> [Flat]? {
        entries?.map { Flat(device: $0.device, frames: $0.frames.map(\.frame), received: $0.frames.map(\.receivedAtMicros)) }
    }

    func flat(_ device: DeviceRecordRef, _ frames: [(frame: AcceptedFrame, wire: [UInt8])]) -> Flat {
        Flat(device: device, frames: frames.map(\.frame.frame), received: frames.map(\.frame.receivedAtMicros))
    }

    /// A frame of several kinds of readings, received a little after `now`.
    func accepted(_ seq: UInt64, base: Int64? = nil) -> (frame: AcceptedFrame, wire: [UInt8]) {
        let frame = TelemetryFrame(
            seq: seq, baseTime: base ?? now,
            readings: [
                Reading(name: "temp", offsetMicros: Int32(seq % 1_000), value: .f64(Double(seq) / 4)),
                Reading(name: "count", value: .i64(-Int64(bitPattern: seq))),
                Reading(name: "door.open", offsetMicros: -1, value: .bool(seq % 2 == 0)),
                Reading(name: "fw", value: .string("v\(seq) ✓")),
            ])
        return (AcceptedFrame(frame: frame, receivedAtMicros: now + Int64(seq % 1_000_000)), frame.encoded())
    }

    /// The smallest frame: one bool reading.
    func small(_ seq: UInt64) -> (frame: AcceptedFrame, wire: [UInt8]) {
        let frame = TelemetryFrame(seq: seq, baseTime: now, readings: [Reading(name: "b", value: .bool(true))])
        return (AcceptedFrame(frame: frame, receivedAtMicros: now), frame.encoded())
    }

    /// A message written by hand from the layout, for inputs the writer cannot make.
    func message(key: Int32, id: [UInt8], frames: [(received: Int64, wire: [UInt8])], version: UInt8 = 1) -> [UInt8] {
        var out: [UInt8] = [version]
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.bigEndian) { out += $0 } }
        put(key)
        out.append(UInt8(id.count))
        out += id
        put(UInt16(frames.count))
        for (received, wire) in frames {
            put(received)
            put(UInt32(wire.count))
            out += wire
        }
        return out
    }

    @Test("several devices with several frames each decode back to the same devices, frames and receive times")
    func roundTrip() {
        let devices = [
            (DeviceRecordRef(key: 1, id: "sensor-1"), (1...3).map { accepted($0) }),
            (DeviceRecordRef(key: -7, id: "kitchen.temp"), [accepted(10), accepted(11, base: 0)]),
            (DeviceRecordRef(key: Int32.max, id: "x"), (100...109).map { accepted($0) }),
            (DeviceRecordRef(key: Int32.min, id: "A_b-9"), [accepted(UInt64(Int64.max))]),
        ]
        var writer = RemoteFrames.Writer()
        for (device, frames) in devices { writer.append(device, frames: frames) }
        let decoded = RemoteFrames.decode(writer.take())
        #expect(flat(decoded) == devices.map { flat($0.0, $0.1) })
        #expect(decoded?.map { $0.frames.map(\.frame.seq) } == [[1, 2, 3], [10, 11], Array(100...109), [UInt64(Int64.max)]])
        #expect(decoded?.map(\.device.key) == [1, -7, Int32.max, Int32.min])
        #expect(decoded?.map(\.device.id) == ["sensor-1", "kitchen.temp", "x", "A_b-9"])
    }

    @Test("one device with one frame is written as exactly the bytes of the layout, and they decode back")
    func goldenBytes() {
        let frame = TelemetryFrame(seq: 1, baseTime: 0, readings: [Reading(name: "b", value: .bool(true))])
        let expected = bytes(
            hex: "01"  // version
                + "fffffffe"  // storage key -2
                + "02" + "6431"  // id "d1"
                + "0001"  // one frame
                + "000644239c794000"  // received at 1,763,769,600,000,000 µs
                + "0000001c"  // 28 bytes of frame:
                + "0101" + "0000000000000001" + "0000000000000000" + "0001"  // version, kind, seq 1, base 0, 1 reading
                + "0162" + "00000000" + "03" + "01")  // "b", offset 0, bool, true
        var writer = RemoteFrames.Writer()
        writer.append(DeviceRecordRef(key: -2, id: "d1"), frames: [(AcceptedFrame(frame: frame, receivedAtMicros: now), frame.encoded())])
        #expect(hex(writer.take()) == hex(expected))
        let decoded = RemoteFrames.decode(expected)
        #expect(decoded?.count == 1)
        #expect(decoded?.first?.device == DeviceRecordRef(key: -2, id: "d1"))
        #expect(decoded?.first?.frames.map(\.frame) == [frame])
        #expect(decoded?.first?.frames.map(\.receivedAtMicros) == [now])
    }

    @Test("a writer is empty after take, and an empty message decodes to no entries")
    func emptyAfterTake() {
        var writer = RemoteFrames.Writer()
        #expect(writer.isEmpty)
        writer.append(DeviceRecordRef(key: 1, id: "d"), frames: [])
        #expect(writer.isEmpty)
        writer.append(DeviceRecordRef(key: 1, id: "d"), frames: [small(1)])
        #expect(!writer.isEmpty)
        let first = writer.take()
        #expect(first.count > 1)
        #expect(writer.isEmpty)
        #expect(writer.bytes == [RemoteFrames.version])
        writer.append(DeviceRecordRef(key: 2, id: "e"), frames: [small(2)])
        #expect(flat(RemoteFrames.decode(writer.take())) == [flat(DeviceRecordRef(key: 2, id: "e"), [small(2)])])
        let empty = writer.take()
        #expect(empty == [RemoteFrames.version])
        #expect(RemoteFrames.decode(empty)?.isEmpty == true)
    }

    @Test("every cut of a message is nil, except a cut between entries, which decodes to the entries before it")
    func truncations() {
        let devices = [
            (DeviceRecordRef(key: 1, id: "a"), [accepted(1), accepted(2)]),
            (DeviceRecordRef(key: 2, id: "bb"), [accepted(3)]),
            (DeviceRecordRef(key: 3, id: "ccc"), [accepted(4), accepted(5), accepted(6)]),
        ]
        var writer = RemoteFrames.Writer()
        var boundaries = [writer.bytes.count]
        for (device, frames) in devices {
            writer.append(device, frames: frames)
            boundaries.append(writer.bytes.count)
        }
        let whole = writer.take()
        #expect(boundaries.last == whole.count)
        for cut in 0...whole.count {
            let decoded = flat(RemoteFrames.decode(Array(whole.prefix(cut))))
            if let entries = boundaries.firstIndex(of: cut) {
                #expect(decoded == devices.prefix(entries).map { flat($0.0, $0.1) }, "cut at \(cut)")
            } else {
                #expect(decoded == nil, "cut at \(cut)")
            }
        }
    }

    @Test("a message of another version, or no bytes at all, is nil")
    func wrongVersion() {
        var writer = RemoteFrames.Writer()
        writer.append(DeviceRecordRef(key: 1, id: "d"), frames: [small(1)])
        let good = writer.take()
        #expect(RemoteFrames.decode(good) != nil)
        for version: UInt8 in [0, 2, 0xff] {
            var other = good
            other[0] = version
            #expect(RemoteFrames.decode(other) == nil)
        }
        #expect(RemoteFrames.decode([]) == nil)
        #expect(RemoteFrames.decode([2]) == nil)
    }

    @Test("one frame that does not decode makes the whole message nil")
    func badFrame() {
        let good = small(1)
        var writer = RemoteFrames.Writer()
        writer.append(DeviceRecordRef(key: 1, id: "ok"), frames: [good])
        let valid = message(key: 2, id: Array("d".utf8), frames: [(now, small(2).wire), (now, small(3).wire)])
        #expect(RemoteFrames.decode(writer.bytes + valid.dropFirst())?.count == 2)
        for bad in [good.wire + [0], Array(good.wire.dropLast()), [], [2] + good.wire.dropFirst()] {
            let broken = message(key: 2, id: Array("d".utf8), frames: [(now, small(2).wire), (now, bad)])
            #expect(RemoteFrames.decode(broken) == nil)
            #expect(RemoteFrames.decode(writer.bytes + broken.dropFirst()) == nil)
        }
        // Readings of a frame with base 0 are timed by the receive time carried beside it.
        let unbased = TelemetryFrame(seq: 1, baseTime: 0, readings: [Reading(name: "b", value: .bool(true))]).encoded()
        #expect(RemoteFrames.decode(message(key: 2, id: Array("d".utf8), frames: [(now, unbased)])) != nil)
        #expect(RemoteFrames.decode(message(key: 2, id: Array("d".utf8), frames: [(-1, unbased)])) == nil)
    }

    @Test("an id that is not UTF-8 makes the message nil")
    func idNotUTF8() {
        #expect(RemoteFrames.decode(message(key: 1, id: Array("dé".utf8), frames: [(now, small(1).wire)])) != nil)
        #expect(RemoteFrames.decode(message(key: 1, id: [0x64, 0xff], frames: [(now, small(1).wire)])) == nil)
        #expect(RemoteFrames.decode(message(key: 1, id: [0x64, 0xc3], frames: [(now, small(1).wire)])) == nil)
    }

    @Test("an id of exactly 255 bytes round trips, and a longer one is cut to its first 255")
    func longIDs() {
        let id = String(repeating: "a", count: 250) + "-1234"
        #expect(id.utf8.count == 255)
        var writer = RemoteFrames.Writer()
        writer.append(DeviceRecordRef(key: 9, id: id), frames: [small(1)])
        let bytes = writer.take()
        #expect(bytes[5] == 255)
        #expect(RemoteFrames.decode(bytes)?.map(\.device) == [DeviceRecordRef(key: 9, id: id)])
        writer.append(DeviceRecordRef(key: 9, id: id + "5"), frames: [small(1)])
        #expect(writer.take() == bytes)
    }

    @Test("more than 65,535 frames of one device are split into entries of at most 65,535")
    func manyFrames() {
        let frames = (1...65_537).map { small(UInt64($0)) }
        var writer = RemoteFrames.Writer()
        writer.append(DeviceRecordRef(key: 4, id: "busy"), frames: frames)
        let bytes = writer.take()
        // version, key, id length, "busy", then the first count.
        #expect(Array(bytes[10..<12]) == [0xff, 0xff])
        let decoded = RemoteFrames.decode(bytes)
        #expect(decoded?.map(\.frames.count) == [65_535, 2])
        #expect(decoded?.allSatisfy { $0.device == DeviceRecordRef(key: 4, id: "busy") } == true)
        #expect(decoded?.flatMap { $0.frames.map(\.frame.seq) } == Array(1...65_537))
    }

    @Test("exactly 65,535 frames of one device fit in one entry")
    func maxFramesOneEntry() {
        let frames = (1...65_535).map { small(UInt64($0)) }
        var writer = RemoteFrames.Writer()
        writer.append(DeviceRecordRef(key: 4, id: "busy"), frames: frames)
        #expect(RemoteFrames.decode(writer.take())?.map(\.frames.count) == [65_535])
    }
}
