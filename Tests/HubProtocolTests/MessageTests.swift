import Foundation
import HubProtocol
import HubTestSupport
import Testing

/// Random JSON values and strings, from a seeded generator.
private struct RandomJSON {
    var generator: SeededGenerator

    /// Scalars that stress escaping: quotes, backslashes, every control character, DEL,
    /// the line separators, and characters of two, three and four UTF-8 bytes.
    /// U+FEFF is left out: Foundation's `JSONSerialization` drops it from some strings (at
    /// a string's start, for one); `JSONDecoder` keeps it, and `quoting` checks that.
    static let tricky: [Unicode.Scalar] =
        (0..<0x20).map { Unicode.Scalar($0)! } + ["\"", "\\", "/", "\u{7F}", "\u{85}", "\u{2028}", "\u{2029}", "é", "€", "𝄞", "😀"]

    mutating func string() -> String {
        var text = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...12, using: &generator) {
            if Bool.random(using: &generator) {
                text.append(Self.tricky.randomElement(using: &generator)!)
            } else {
                // Any scalar but a surrogate.
                var value = UInt32.random(in: 0x20...0x10FFFF, using: &generator)
                if (0xD800...0xDFFF).contains(value) || value == 0xFEFF { value = 0x41 }
                text.append(Unicode.Scalar(value)!)
            }
        }
        return String(text)
    }

    mutating func double() -> Double {
        switch Int.random(in: 0..<6, using: &generator) {
        case 0: Double(bitPattern: generator.next())  // any bits, NaN and infinities included
        case 1: Double.random(in: -1...1, using: &generator)
        case 2: [0.0, -0.0, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 0.1, 1e-5, 1e21]
            .randomElement(using: &generator)!
        default: Double.random(in: -1e12...1e12, using: &generator)
        }
    }

    mutating func value(depth: Int = 0) -> JSONValue {
        switch Int.random(in: 0..<(depth < 4 ? 9 : 7), using: &generator) {
        case 0: .null
        case 1: .bool(Bool.random(using: &generator))
        case 2: .integer(Int64(bitPattern: generator.next()))
        case 3: .unsigned(UInt64.random(in: UInt64(Int64.max) + 1...UInt64.max, using: &generator))
        case 4:
            // As JSON has one kind of number, a whole double that fits 64 bits reads back as
            // an integer, and NaN and the infinities as null: generate what reads back.
            switch double() {
            case let whole where Int64(exactly: whole) != nil: .integer(Int64(exactly: whole)!)
            case let whole where UInt64(exactly: whole) != nil: .unsigned(UInt64(exactly: whole)!)
            case let double where double.isFinite: .double(double)
            default: .null
            }
        case 5, 6: .string(string())
        case 7: .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in value(depth: depth + 1) })
        default:
            .object(Dictionary(
                (0..<Int.random(in: 0...4, using: &generator)).map { _ in (string(), value(depth: depth + 1)) }, uniquingKeysWith: { a, _ in a }))
        }
    }
}

/// Whether what `JSONSerialization` read (`read`) is the value that was written.
private func same(_ read: Any, _ value: JSONValue) -> Bool {
    switch value {
    case .null: return read is NSNull
    case .bool(let bool): return (read as? NSNumber).map { String(cString: $0.objCType) == "c" && $0.boolValue == bool } ?? false
    case .integer(let integer): return (read as? NSNumber)?.int64Value == integer
    case .unsigned(let unsigned): return (read as? NSNumber)?.uint64Value == unsigned
    case .double(let double):
        // Foundation's JSONSerialization reads some numbers as decimals (`1.3e+124`): their
        // digits are exact. It reads others as doubles, not always rounded to the nearest
        // (474167246493.51416 comes two units in the last place off); JSONDecoder rounds
        // right, and the round trips check that exactly.
        if let decimal = read as? NSDecimalNumber { return Double(decimal.stringValue) == double }
        guard let number = (read as? NSNumber)?.doubleValue else { return false }
        return abs(number - double) <= 4 * double.ulp
    case .string(let string): return read as? String == string
    case .array(let array):
        guard let list = read as? [Any], list.count == array.count else { return false }
        return zip(list, array).allSatisfy { same($0, $1) }
    case .object(let object):
        guard let dictionary = read as? [String: Any], dictionary.count == object.count else { return false }
        return object.allSatisfy { key, member in dictionary[key].map { same($0, member) } ?? false }
    }
}

@Suite("JSON writer and the contract's messages")
struct MessageTests {
    @Test("what the writer writes, JSONSerialization reads back as the same value: 5,000 random values")
    func writerAgainstJSONSerialization() throws {
        var random = RandomJSON(generator: SeededGenerator())
        for _ in 0..<5_000 {
            let value = random.value()
            let text = value.json
            #expect(JSONValue.parse(text) == value, "seed \(random.generator.seed): \(text)")
            let read = try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
            #expect(same(read, value), "seed \(random.generator.seed): \(text)")
            if !same(read, value) { return }
        }
    }

    @Test("a quoted string reads back unchanged, and only quotes, backslashes and control characters are escaped")
    func quoting() throws {
        var random = RandomJSON(generator: SeededGenerator())
        for _ in 0..<5_000 {
            let text = random.string()
            let quoted = JSON.quote(text)
            let read = try JSONSerialization.jsonObject(with: Data(quoted.utf8), options: .fragmentsAllowed) as? String
            #expect(read == text, "seed \(random.generator.seed): \(quoted)")
            let bare = quoted.unicodeScalars.dropFirst().dropLast().filter { $0 != "\\" }
            #expect(!bare.contains { $0.value < 0x20 }, "seed \(random.generator.seed)")
        }
        #expect(JSON.quote("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
        for text in ["\u{FEFF}", "\u{FEFF}x", "x\u{FEFF}y"] {
            #expect(try JSONDecoder().decode(String.self, from: Data(JSON.quote(text).utf8)) == text)
        }
        #expect(JSON.number(.nan) == "null" && JSON.number(-.infinity) == "null" && JSON.number(21.5) == "21.5")
    }

    @Test("every message the hub writes reads back as the value it wrote, also through JSONEncoder")
    func roundTrips() throws {
        var random = RandomJSON(generator: SeededGenerator())
        for _ in 0..<300 {
            let text = { random.string() }
            let int = { Int64(bitPattern: random.generator.next()) }
            let object = JSONValue.object(["k": random.value(), text(): random.value()])
            try check(Welcome(
                device: text(), connection: text(), session: int(), lastSeq: random.generator.next(), serverTimeMicros: int(),
                maxFrameBytes: Int(int()), heartbeatSeconds: 30))
            try check(Rejected(seq: Bool.random(using: &random.generator) ? random.generator.next() : nil, reason: text()))
            try check(DeviceCommand(id: text(), name: text(), params: RawJSON(object.json), expiresAtMicros: int()))
            try check(CommandAck(id: text()))
            try check(CommandResult(id: text(), ok: true, result: random.value()))
            try check(CommandResult(id: text(), ok: false, error: .string(text())))
            try check(ErrorMessage(code: text(), message: text()))
            try check(Hello(connection: text(), serverTimeMicros: int()))
            try check(Subscribed(id: text()))
            try check(Lagged(sub: text(), dropped: Int(int())))
            try check(Presence(device: text(), online: true, session: int(), connection: text(), remote: text(), atMicros: int()))
            try check(ReplayDone(sub: text()))
            try check(CommandStatusMessage(id: text(), device: text(), status: "succeeded", ref: text(), result: RawJSON(object.json)))
            try check(LiveTelemetry(
                sub: text(), device: text(), seq: random.generator.next(),
                readings: [.init(metric: text(), tsMicros: int(), value: .string(text())), .init(metric: "t", tsMicros: 1, value: .double(21.5))]))
            try check(Subscribe(
                id: text(), devices: [text()], metrics: [text()], maxRateHz: 2.5, sinceMicros: int(),
                resume: [text(): random.generator.next() >> 1]))
            try check(Unsubscribe(id: text()))
            try check(LiveCommand(device: text(), name: text(), params: object, ttlSeconds: 60, ref: text()))
        }
        try check(Pong())
        try check(Ping())

        func check<M: HubMessage>(_ message: M) throws {
            #expect(try M.decode(message.json) == message, "seed \(random.generator.seed): \(message.json)")
            #expect(MessageEnvelope.read(message.json)?.type == .some(.some(M.type)))
            let encoded = try JSONEncoder().encode(message)
            #expect(try JSONDecoder().decode(M.self, from: encoded) == message)
        }
    }

    @Test("the contract's examples read as their types")
    func contractExamples() throws {
        let welcome = try Welcome.decode(
            #"{"type":"welcome","device":"sensor-1","connection":"c1","session":12,"last_seq":1234,"server_time_us":1763769600000000,"max_frame_bytes":65536,"heartbeat_s":30}"#)
        #expect(welcome.lastSeq == 1234 && welcome.heartbeatSeconds == 30)
        let command = try DeviceCommand.decode(
            #"{"type":"command","id":"9b2e","name":"set_interval","params":{"seconds":5},"expires_at_us":1763769900000000}"#)
        #expect(command.params.value["seconds"] == .integer(5))
        let result = try CommandResult.decode(#"{"type":"command_result","id":"9b2e","ok":false,"error":"unsupported"}"#)
        #expect(result.error == .string("unsupported") && result.result == nil)
        let subscribe = try Subscribe.decode(
            #"{"type":"subscribe","id":"s1","devices":["sensor-*"],"metrics":["temp"],"since_us":1,"resume":{"sensor-1":42},"max_rate_hz":10}"#)
        #expect(subscribe.resume == ["sensor-1": 42] && subscribe.maxRateHz == 10)
        let telemetry = try LiveTelemetry.decode(
            #"{"type":"telemetry","sub":"s1","device":"sensor-1","seq":42,"readings":[{"metric":"temp","ts_us":5,"value":21.5}]}"#)
        #expect(telemetry.readings == [.init(metric: "temp", tsMicros: 5, value: .double(21.5))])
    }

    @Test("a subscribe is read strictly: a wrong type or a null names its field; 1.0 is a whole number and 1.5 is not")
    func strictSubscribe() throws {
        func field(_ text: String) -> String? {
            do {
                _ = try Subscribe.decode(text)
                return nil
            } catch let DecodingError.keyNotFound(key, _) {
                return key.stringValue
            } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                let DecodingError.dataCorrupted(context)
            {
                return context.codingPath.map(\.stringValue).joined(separator: ".")
            } catch {
                return "?"
            }
        }
        #expect(field(#"{"id":"s","devices":["a"]}"#) == nil)
        #expect(field(#"{"devices":["a"]}"#) == "id")
        #expect(field(#"{"id":"s","devices":["a",1]}"#)?.hasPrefix("devices") == true)
        #expect(field(#"{"id":"s","devices":["a"],"metrics":null}"#) == "metrics")
        #expect(field(#"{"id":"s","devices":["a"],"max_rate_hz":true}"#) == "max_rate_hz")
        #expect(field(#"{"id":"s","devices":["a"],"since_us":1.5}"#) == "since_us")
        #expect(field(#"{"id":"s","devices":["a"],"since_us":1.0}"#) == nil)
        #expect(field(#"{"id":"s","devices":["a"],"resume":[]}"#) == "resume")
        #expect(field(#"{"id":"s","devices":["a"],"resume":{"d":-1}}"#) == "resume.d")
        #expect(field(#"{"id":"s","devices":["a"],"resume":{"d":9223372036854775808}}"#) == "resume.d")
    }
}
