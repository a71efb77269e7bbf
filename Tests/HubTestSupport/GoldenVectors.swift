import Foundation
import HubProtocol

/// The contract's golden vectors, from the copy committed beside the tests.
public struct GoldenVectors: Sendable {
    public struct Valid: Sendable { public var hex: String; public var frame: TelemetryFrame }
    public struct Invalid: Sendable { public var why: String; public var hex: String }

    public var valid: [Valid] = []
    public var invalid: [Invalid] = []
    public var ackHex = ""
    public var ackSeq: UInt64 = 0

    public static let shared = try! GoldenVectors()

    /// The hex of the invalid vector listed with `why`.
    public func invalidHex(_ why: String) -> String {
        invalid.first { $0.why == why }!.hex
    }

    public init() throws {
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

/// The bytes a hex string spells (two digits a byte).
public func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return out
}

/// Bytes as lowercase hex.
public func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}
