import Foundation
import HubProtocol
import Testing

/// The contract's golden vectors, from the copy committed beside the tests.
struct GoldenVectors {
    struct Valid { var hex: String; var frame: TelemetryFrame }
    struct Invalid { var why: String; var hex: String }

    var valid: [Valid] = []
    var invalid: [Invalid] = []
    var ackHex = ""
    var ackSeq: UInt64 = 0

    static let shared = try! GoldenVectors()

    init() throws {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/protocol-vectors.json")
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let ack = root["ack_example"] as! [String: Any]
        ackHex = ack["hex"] as! String
        ackSeq = (ack["ack_seq"] as! NSNumber).uint64Value
        for entry in root["valid"] as! [[String: Any]] {
            let frame = entry["frame"] as! [String: Any]
            let readings = (frame["readings"] as! [[String: Any]]).map { reading -> Reading in
                let raw = reading["value"]!
                let value: Value =
                    switch reading["type"] as! String {
                    case "f64": .f64((raw as! NSNumber).doubleValue)
                    case "i64": .i64((raw as! NSNumber).int64Value)
                    case "bool": .bool((raw as! NSNumber).boolValue)
                    default: .string(raw as! String)
                    }
                return Reading(
                    name: reading["name"] as! String,
                    offsetMicros: (reading["offset_us"] as! NSNumber).int32Value,
                    value: value)
            }
            valid.append(Valid(
                hex: entry["hex"] as! String,
                frame: TelemetryFrame(
                    seq: (frame["seq"] as! NSNumber).uint64Value,
                    baseTime: (frame["base_time"] as! NSNumber).int64Value,
                    readings: readings)))
        }
        for entry in root["invalid"] as! [[String: Any]] {
            invalid.append(Invalid(why: entry["why"] as! String, hex: entry["hex"] as! String))
        }
    }
}

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return out
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

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
