import HubProtocol
import HubTestSupport
import Testing

@Suite("Frame errors")
struct FrameErrorTests {
    func error(_ hexString: String) -> FrameError? {
        do {
            _ = try TelemetryFrame(decoding: bytes(hex: hexString), receivedAtMicros: now)
            return nil
        } catch {
            return error
        }
    }

    @Test("a rejection names the seq when the header is well formed, and null otherwise")
    func seqIsReportedOnlyForWellFormedHeaders() throws {
        let invalid = Dictionary(uniqueKeysWithValues: GoldenVectors.shared.invalid.map { ($0.why, $0.hex) })
        #expect(error(invalid["NaN"]!)?.seq == 1)
        #expect(error(invalid["trailing bytes"]!)?.seq == 1)
        #expect(error(invalid["truncated header"]!)?.seq == 1)
        #expect(error(invalid["unsupported version"]!)?.seq == nil)
        #expect(error(invalid["unknown kind"]!)?.seq == nil)
        #expect(error(invalid["zero seq"]!)?.seq == nil)
        #expect(error(invalid["seq above 2^63-1"]!)?.seq == nil)
        #expect(error(invalid["empty"]!)?.seq == nil)
    }

    @Test("reasons name the broken rule")
    func reasonsNameTheRule() {
        let cases: [(String, FrameError.Code)] = [
            ("empty", .empty), ("unsupported version", .unsupportedVersion), ("unknown kind", .unknownKind),
            ("zero readings", .noReadings), ("metric name with space", .badName), ("NaN", .nonFiniteFloat),
            ("string 1025 bytes", .stringTooLong), ("string not UTF-8", .badString),
            ("string containing U+0000", .badString), ("negative base time", .negativeBaseTime),
            ("reading time after year 9999", .timeOutOfRange), ("trailing bytes", .trailingBytes),
            ("bool not 0 or 1", .badBool), ("unknown value type", .unknownValueType),
        ]
        let hexes = Dictionary(uniqueKeysWithValues: GoldenVectors.shared.invalid.map { ($0.why, $0.hex) })
        for (why, code) in cases {
            #expect(error(hexes[why]!)?.code == code, "\(why)")
        }
    }

    @Test("a frame with base_time 0 takes its time from the receive time")
    func zeroBaseTimeUsesReceiveTime() throws {
        let frame = TelemetryFrame(seq: 5, baseTime: 0, readings: [Reading(name: "x", offsetMicros: -10, value: .i64(1))])
        #expect(throws: FrameError.self) { try TelemetryFrame(decoding: frame.encoded(), receivedAtMicros: 5) }
        #expect(try TelemetryFrame(decoding: frame.encoded(), receivedAtMicros: 10) == frame)
        #expect(frame.effectiveBase(receivedAtMicros: 99) == 99)
    }

    @Test("device ids follow the contract's rules")
    func deviceIDs() {
        #expect(DeviceID.isValid("sensor-1"))
        #expect(DeviceID.isValid("a.b_c-D9"))
        #expect(DeviceID.isValid(".hidden"))
        #expect(DeviceID.isValid(String(repeating: "x", count: 64)))
        #expect(!DeviceID.isValid(""))
        #expect(!DeviceID.isValid("."))
        #expect(!DeviceID.isValid(".."))
        #expect(!DeviceID.isValid(String(repeating: "x", count: 65)))
        #expect(!DeviceID.isValid("a b"))
        #expect(!DeviceID.isValid("a%20b"))
        #expect(!DeviceID.isValid("a/b"))
        #expect(!DeviceID.isValid("é"))
    }
}
