/// The bytes and small byte rules the NATS text protocol is built from.
enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let crlf: [UInt8] = [cr, lf]

    /// Fields are separated by one or more spaces or tabs.
    static func isDelimiter(_ byte: UInt8) -> Bool { byte == space || byte == tab }

    /// A byte that would split or end a control line if written inside a field.
    static func breaksField(_ byte: UInt8) -> Bool { isDelimiter(byte) || byte == cr || byte == lf }

    /// `A`...`Z` folded to `a`...`z`; every other byte unchanged.
    static func lowercased(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }

    /// A non-negative decimal number with no sign, or `nil` when it is empty, has another
    /// byte in it, or does not fit in an `Int`.
    static func decimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard (0x30...0x39).contains(byte) else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int(byte - 0x30))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }
}
