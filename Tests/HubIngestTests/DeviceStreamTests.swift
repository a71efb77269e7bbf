import HubIngest
import HubProtocol
import Testing

@Suite("Device stream state machine")
struct DeviceStreamTests {
    let now: Int64 = 1_763_769_600_000_000

    func frame(_ seq: UInt64) -> [UInt8] {
        TelemetryFrame(seq: seq, baseTime: now, readings: [Reading(name: "t", value: .f64(1))]).encoded()
    }

    func receive(_ stream: inout DeviceStream, _ bytes: [UInt8], at time: Int64? = nil) -> DeviceStream.Action {
        bytes.withUnsafeBytes { stream.receive($0, nowMicros: time ?? now) }
    }

    @Test("frames above the mark are accepted and advance it")
    func acceptsAboveMark() {
        var stream = DeviceStream(mark: 10)
        guard case .accept(let accepted) = receive(&stream, frame(11)) else { Issue.record("not accepted"); return }
        #expect(accepted.frame.seq == 11)
        #expect(stream.acceptedMark == 11)
        #expect(stream.committedMark == 10)
    }

    @Test("a duplicate at or below the committed mark is acked at once with the committed mark")
    func committedDuplicateAckedNow() {
        var stream = DeviceStream(mark: 10)
        guard case .duplicate(let ack) = receive(&stream, frame(7)) else { Issue.record("not a duplicate"); return }
        #expect(ack == 10)
        #expect(stream.duplicates == 1)
    }

    @Test("a duplicate of a frame still in flight waits for the commit's ack")
    func inFlightDuplicateWaits() {
        var stream = DeviceStream(mark: 0)
        _ = receive(&stream, frame(1))
        _ = receive(&stream, frame(2))
        guard case .duplicate(let ack) = receive(&stream, frame(2)) else { Issue.record("not a duplicate"); return }
        #expect(ack == nil)
        stream.committed(upTo: 2)
        guard case .duplicate(let later) = receive(&stream, frame(2)) else { Issue.record("not a duplicate"); return }
        #expect(later == 2)
    }

    @Test("a bad frame with a readable seq is rejected and advances the mark; without one it does not")
    func rejectionsAndTheMark() {
        var stream = DeviceStream(mark: 0)
        var bad = frame(5)
        bad.append(0)  // trailing byte
        guard case .reject(let rejected, let close) = receive(&stream, bad) else { Issue.record("not rejected"); return }
        #expect(rejected.seq == 5)
        #expect(rejected.payload == bad)
        #expect(!close)
        #expect(stream.acceptedMark == 5)
        guard case .reject(let unnumbered, _) = receive(&stream, [9, 9]) else { Issue.record("not rejected"); return }
        #expect(unnumbered.seq == nil)
        #expect(stream.acceptedMark == 5)
        // The duplicate check comes first, whatever the body.
        guard case .duplicate = receive(&stream, bad) else { Issue.record("not a duplicate"); return }
    }

    @Test("more than the bad-frame limit within the window asks to close; spread out it does not")
    func badFrameLimit() {
        var limits = DeviceStream.Limits()
        limits.maxBadFrames = 3
        limits.badFrameWindowMicros = 1_000
        var stream = DeviceStream(mark: 0, limits: limits)
        var closes: [Bool] = []
        for index in 0..<4 {
            if case .reject(_, let close) = receive(&stream, [2], at: now + Int64(index)) { closes.append(close) }
        }
        #expect(closes == [false, false, false, true])

        var spread = DeviceStream(mark: 0, limits: limits)
        var spreadCloses: [Bool] = []
        for index in 0..<8 {
            if case .reject(_, let close) = receive(&spread, [2], at: now + Int64(index) * 600) { spreadCloses.append(close) }
        }
        #expect(!spreadCloses.contains(true))
    }

    @Test("gaps in seq are counted")
    func gapsCounted() {
        var stream = DeviceStream(mark: 0)
        _ = receive(&stream, frame(1))
        _ = receive(&stream, frame(5))
        _ = receive(&stream, frame(6))
        #expect(stream.gaps == 1)
    }
}
