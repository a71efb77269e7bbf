/// Device ids: 1 to 64 characters of `[A-Za-z0-9._-]`, not made only of dots.
public enum DeviceID {
    public static let maxLength = 64

    public static func isValid<S: StringProtocol>(_ id: S) -> Bool {
        let utf8 = id.utf8
        guard !utf8.isEmpty, utf8.count <= maxLength else { return false }
        var allDots = true
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                allDots = false
            case UInt8(ascii: "."):
                break
            default:
                return false
            }
        }
        return !allDots
    }
}
