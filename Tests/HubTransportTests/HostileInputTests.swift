import Foundation
import HubIngest
import HubProtocol
import Testing

@testable import HubTransport

@Suite("Hostile input at the door: /live numbers and limits, storable JSON, failed-auth budget")
struct HostileInputTests {
    func subscribe(_ fields: String, maxPatterns: Int = 100) -> String? {
        do {
            _ = try LiveClientMessage(text: #"{"type":"subscribe","id":"s","devices":["*"]\#(fields)}"#, limits: .init(maxPatterns: maxPatterns))
            return nil
        } catch {
            return error.code
        }
    }

    @Test("max_rate_hz must be a number from 0.001 to 1000")
    func rates() {
        for bad in ["1e-12", "0", "-1", "0.0009", "1000.5", "1e308", "\"10\"", "true", "null", "[]"] {
            #expect(subscribe(#","max_rate_hz":\#(bad)"#) == "bad_subscription", "\(bad)")
        }
        for good in ["0.001", "1000", "1", "2.5"] {
            #expect(subscribe(#","max_rate_hz":\#(good)"#) == nil, "\(good)")
        }
    }

    @Test("since_us and resume take integers in range only")
    func integers() {
        for bad in ["-1", "1.5", "1e300", "true", "\"5\"", "18446744073709551616", "9223372036854775808"] {
            #expect(subscribe(#","since_us":\#(bad)"#) == "bad_subscription", "since_us \(bad)")
            #expect(subscribe(#","resume":{"d1":\#(bad)}"#) == "bad_subscription", "resume \(bad)")
        }
        #expect(subscribe(#","since_us":0,"resume":{"d1":9223372036854775807}"#) == nil)
    }

    @Test("devices and metrics hold at most --max-patterns entries, and metrics must be metric names")
    func patterns() {
        let hundred = (0..<100).map { #""d\#($0)""# }.joined(separator: ",")
        #expect((try? LiveClientMessage(text: #"{"type":"subscribe","id":"s","devices":[\#(hundred)],"metrics":[\#(hundred)]}"#, limits: .init())) != nil)
        let more = hundred + #","x""#
        #expect(subscribe(#","metrics":[\#(more)]"#) == "bad_subscription")
        #expect((try? LiveClientMessage(text: #"{"type":"subscribe","id":"s","devices":[\#(more)]}"#, limits: .init())) == nil)
        #expect(subscribe(#","metrics":["a\"\u0301"]"#) == "bad_subscription")
        #expect(subscribe(#","metrics":["x"]"#, maxPatterns: 1) == nil)
        #expect(subscribe(#","metrics":["x","y"]"#, maxPatterns: 1) == "bad_subscription")
    }

    @Test("JSON to be stored may not hold U+0000 anywhere nor nest past 32 levels")
    func storable() throws {
        func parse(_ text: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed) }
        #expect(StorableJSON.refusal(try parse(#"{"a":[1,{"b":"ok"}]}"#)) == nil)
        #expect(StorableJSON.refusal(try parse(#""x\u0000""#)) != nil)
        #expect(StorableJSON.refusal(try parse(#"{"k\u0000":1}"#)) != nil)
        #expect(StorableJSON.refusal(try parse(#"[[[{"deep":"\u0000"}]]]"#)) != nil)
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        let fine = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(StorableJSON.refusal(try parse(deep)) != nil)
        #expect(StorableJSON.refusal(try parse(fine)) == nil)
    }

    @Test("strict JSON numbers: no booleans, no fractions for integers, nothing out of range")
    func numbers() throws {
        func parse(_ text: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed) }
        #expect(JSONNumber.integer(try parse("5"), in: 1...10) == 5)
        #expect(JSONNumber.integer(try parse("5.0"), in: 1...10) == 5)
        #expect(JSONNumber.integer(try parse("5.5"), in: 1...10) == nil)
        #expect(JSONNumber.integer(try parse("true"), in: 0...10) == nil)
        #expect(JSONNumber.integer(try parse("1e300"), in: 0...Int64.max) == nil)
        #expect(JSONNumber.integer(try parse("18446744073709551615"), in: 0...Int64.max) == nil)
        #expect(JSONNumber.integer(try parse("123456789012345678901234"), in: 0...Int64.max) == nil)
        // The same rules where the hub reads the contract's messages (JSONValue).
        func value(_ text: String) -> JSONValue? { JSONValue.parse(text) }
        #expect(value("5")?.exactInteger(in: 1...10) == 5)
        #expect(value("5.0")?.exactInteger(in: 1...10) == 5)
        #expect(value("5.5")?.exactInteger(in: 1...10) == nil)
        #expect(value("true")?.exactInteger(in: 0...10) == nil)
        #expect(value("1e300")?.exactInteger(in: 0...Int64.max) == nil)
        #expect(value("18446744073709551615")?.exactInteger(in: 0...Int64.max) == nil)
        #expect(value("123456789012345678901234")?.exactInteger(in: 0...Int64.max) == nil)
        #expect(value("false")?.number == nil)
        #expect(value("1e-12")?.number == 1e-12)
    }

    @Test("an address past its failed authentications is blocked until the Retry-After it was told; others are not")
    func failedAuthBudget() {
        let limiter = AuthFailureLimiter(perSecond: 20)
        for _ in 0..<20 { limiter.recordFailure("10.0.0.1", nowNanos: 0) }
        #expect(limiter.isBlocked("10.0.0.1", nowNanos: 0))
        #expect(!limiter.isBlocked("10.0.0.2", nowNanos: 0))
        #expect(limiter.retryAfterSeconds("10.0.0.1", nowNanos: 0) == 1)
        // Two failures' worth is back after 100 ms, but the block lasts the whole second.
        #expect(limiter.isBlocked("10.0.0.1", nowNanos: 100_000_000))
        #expect(limiter.retryAfterSeconds("10.0.0.1", nowNanos: 100_000_000) == 1)
        #expect(limiter.isBlocked("10.0.0.1", nowNanos: 999_999_999))
        #expect(!limiter.isBlocked("10.0.0.1", nowNanos: 1_000_000_000))
        // After the block the refilled budget counts again: the next failure is let through.
        limiter.recordFailure("10.0.0.1", nowNanos: 1_000_000_000)
        #expect(!limiter.isBlocked("10.0.0.1", nowNanos: 1_000_000_000))
        // Many addresses, each blocked: the table starts over rather than growing.
        for index in 0..<(3 * AuthFailureLimiter.maxAddresses) {
            for _ in 0..<20 { limiter.recordFailure("a\(index)", nowNanos: 200_000_000) }
        }
        #expect(limiter.isBlocked("a\(3 * AuthFailureLimiter.maxAddresses - 1)", nowNanos: 200_000_000))
    }

    @Test("query strings with U+0000 or bad escapes are refused, not truncated")
    func queries() {
        #expect(RequestTarget.queryItems("prefix=a%00b") == nil)
        #expect(RequestTarget.queryItems("prefix=%zz") == nil)
        #expect(RequestTarget.queryItems("prefix=a%20b&x=1") == ["prefix": "a b", "x": "1"])
    }
}
