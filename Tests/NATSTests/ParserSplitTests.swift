import NATS
import Testing

@Suite("NATS parser: any split of the stream")
struct ParserSplitTests {
    @Test("the golden stream fed one byte at a time gives the same ops")
    func oneByteAtATime() throws {
        let stream = bytes(Golden.stream)
        #expect(try parse(stream.map { [$0] }) == Golden.ops)
    }

    @Test("the golden stream cut in two at every point gives the same ops")
    func everyTwoWaySplit() throws {
        let stream = bytes(Golden.stream)
        for cut in 0...stream.count {
            let ops = try parse([Array(stream[..<cut]), Array(stream[cut...])])
            #expect(ops == Golden.ops, "cut at \(cut)")
        }
    }

    @Test("messages cut in three at every pair of points give the same ops")
    func everyThreeWaySplit() throws {
        let text = "HMSG FOO.BAR 9 BAZ.69 34 45\r\n\(Golden.foodHeaders)Hello World\r\nMSG A 1 4\r\n\r\n\r\n\r\nPING\r\n"
        let stream = bytes(text)
        let expected = try parse(text)
        #expect(expected.count == 3)
        for first in 0...stream.count {
            for second in first...stream.count {
                let chunks = [Array(stream[..<first]), Array(stream[first..<second]), Array(stream[second...])]
                #expect(try parse(chunks) == expected, "cut at \(first) and \(second)")
            }
        }
    }

    @Test("a drained parser holds no bytes, and a waiting one holds only the unfinished op")
    func consumedBytesAreDropped() throws {
        var parser = NATSParser()
        parser.append(bytes(Golden.stream))
        while try parser.next() != nil {}
        #expect(parser.bufferedByteCount == 0)

        parser.append(bytes("PING\r\nMSG FOO 9 11\r\nHello"))
        #expect(try parser.next() == .ping)
        #expect(try parser.next() == nil)
        // The control line is read and dropped; only the five payload bytes wait.
        #expect(parser.bufferedByteCount == 5)
        parser.append(bytes(" World\r\nPO"))
        #expect(try parser.next() == msg("FOO", "9", "Hello World"))
        #expect(try parser.next() == nil)
        #expect(parser.bufferedByteCount == 2)
    }

    @Test("a long run of messages dripped in small chunks never holds more than one message")
    func memoryStaysBounded() throws {
        var parser = NATSParser()
        let one = bytes("MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n")
        let stream = Array((0..<500).map { _ in one }.joined())
        var count = 0
        var largest = 0
        var offset = 0
        while offset < stream.count {
            let end = min(offset + 7, stream.count)
            parser.append(stream[offset..<end])
            offset = end
            while try parser.next() != nil { count += 1 }
            largest = max(largest, parser.bufferedByteCount)
        }
        #expect(count == 500)
        #expect(largest < one.count)
        #expect(parser.bufferedByteCount == 0)
    }
}
