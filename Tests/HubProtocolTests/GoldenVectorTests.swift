import Foundation
import HubProtocol
import HubTestSupport
import Testing

let now: Int64 = 1_763_769_600_000_000

@Suite("Golden vectors")
struct GoldenVectorTests {
    @Test("the fixture holds the contract's 6 valid and 23 invalid vectors")
    func fixtureIsComplete() {
        #expect(GoldenVectors.shared.valid.count == 6)
        #expect(GoldenVectors.shared.invalid.count == 23)
    }

    @Test("every valid vector decodes to its listed frame", arguments: GoldenVectors.shared.valid.indices)
    func validDecodes(index: Int) throws {
        let vector = GoldenVectors.shared.valid[index]
        let frame = try TelemetryFrame(decoding: bytes(hex: vector.hex), receivedAtMicros: now)
        #expect(frame == vector.frame)
    }

    @Test("every valid vector encodes back to the same bytes", arguments: GoldenVectors.shared.valid.indices)
    func validRoundTrips(index: Int) throws {
        let vector = GoldenVectors.shared.valid[index]
        #expect(hex(vector.frame.encoded()) == vector.hex)
        let decoded = try TelemetryFrame(decoding: bytes(hex: vector.hex), receivedAtMicros: now)
        #expect(hex(decoded.encoded()) == vector.hex)
    }

    @Test("every invalid vector is rejected with a reason", arguments: GoldenVectors.shared.invalid.indices)
    func invalidIsRejected(index: Int) {
        let vector = GoldenVectors.shared.invalid[index]
        #expect(throws: FrameError.self, "\(vector.why)") {
            try TelemetryFrame(decoding: bytes(hex: vector.hex), receivedAtMicros: now)
        }
    }

    @Test("every prefix of every valid vector is rejected, never a crash")
    func truncationsAreRejected() {
        for vector in GoldenVectors.shared.valid {
            let full = bytes(hex: vector.hex)
            for length in 0..<full.count {
                #expect(throws: FrameError.self) {
                    try TelemetryFrame(decoding: Array(full[..<length]), receivedAtMicros: now)
                }
            }
        }
    }

    @Test("the ack example encodes and decodes byte for byte")
    func ackExample() {
        let vectors = GoldenVectors.shared
        #expect(hex(Ack(seq: vectors.ackSeq).encoded()) == vectors.ackHex)
        #expect(Ack(decoding: bytes(hex: vectors.ackHex)) == Ack(seq: vectors.ackSeq))
        #expect(Ack(decoding: bytes(hex: "0181000000000000002a00")) == nil)
    }
}
