import Foundation
import HubProtocol

/// Numbers from `JSONSerialization`, read strictly: a boolean is not a number, `1.5` is
/// not an integer, and a value outside the range asked for is refused rather than
/// converted (a conversion would trap, wrap or round).
enum JSONNumber {
    /// A JSON integer (no fraction, not a boolean) within `range`.
    static func integer(_ value: Any?, in range: ClosedRange<Int64>) -> Int64? {
        // Integers beyond 64 bits come as decimals: outside any range asked for.
        guard let number = value as? NSNumber, !isBoolean(number), !(number is NSDecimalNumber) else { return nil }
        let exact: Int64? =
            switch String(cString: number.objCType) {
            case "Q": Int64(exactly: number.uint64Value)
            case "d", "f": Int64(exactly: number.doubleValue)
            default: number.int64Value
            }
        guard let exact, range.contains(exact) else { return nil }
        return exact
    }

    /// A JSON `true` or `false` (not a number that bridges to one).
    static func boolean(_ value: Any?) -> Bool? {
        guard let number = value as? NSNumber, isBoolean(number) else { return nil }
        return number.boolValue
    }

    /// `true` and `false` come as numbers of type `c` (char); no JSON integer does.
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }
}

extension JSONValue {
    /// A value from `JSONSerialization` (a REST body's field), numbers read as `JSONNumber` reads them.
    init(foundation value: Any) {
        switch value {
        case is NSNull:
            self = .null
        case let number as NSNumber:
            if let bool = JSONNumber.boolean(number) {
                self = .bool(bool)
            } else if let integer = JSONNumber.integer(number, in: Int64.min...Int64.max) {
                self = .integer(integer)
            } else if String(cString: number.objCType) == "Q" {
                self = .unsigned(number.uint64Value)
            } else {
                self = .double(number.doubleValue)
            }
        case let string as String:
            self = .string(string)
        case let array as [Any]:
            self = .array(array.map(JSONValue.init(foundation:)))
        case let object as [String: Any]:
            self = .object(object.mapValues(JSONValue.init(foundation:)))
        default:
            self = .null
        }
    }
}
