import Foundation

/// The invalid golden vectors, read from the fixture committed beside the tests.
struct GoldenVectorFile {
    struct Invalid { var why: String; var hex: String }
    var invalid: [Invalid]

    static func load() throws -> GoldenVectorFile {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/protocol-vectors.json")
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let invalid = (root["invalid"] as! [[String: Any]]).map { Invalid(why: $0["why"] as! String, hex: $0["hex"] as! String) }
        return GoldenVectorFile(invalid: invalid)
    }

    static func hex(of why: String, in file: GoldenVectorFile) -> String {
        file.invalid.first { $0.why == why }!.hex
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
