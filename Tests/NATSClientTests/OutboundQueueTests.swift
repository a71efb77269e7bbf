import NATS
@testable import NATSClient
import Testing

@Suite("NATS client: the outbound queue")
struct OutboundQueueTests {
    let ping = NATSEncoder.ping

    @Test("only the append onto an empty queue asks for a flush task")
    func firstAppendSchedules() {
        var queue = OutboundQueue(maxBytes: 100)
        #expect(queue.append(publish: [1, 2]) == .first)
        #expect(queue.append(publish: [3]) == .queued)
        #expect(queue.take() == [1, 2, 3])
        #expect(queue.take() == nil)
        #expect(queue.append(publish: [4]) == .first)
    }

    @Test("a publish that would pass the bound is refused; control lines never are")
    func bound() {
        var queue = OutboundQueue(maxBytes: 10)
        #expect(queue.append(publish: Array(repeating: 1, count: 6)) == .first)
        #expect(queue.append(publish: Array(repeating: 2, count: 5)) == .refused)
        #expect(queue.append(publish: Array(repeating: 3, count: 4)) == .queued)
        #expect(queue.append(publish: [4]) == .refused)
        #expect(queue.append(control: Array(repeating: 5, count: 20)) == .queued)
        #expect(queue.bytes.count == 30)
    }

    @Test("PONGs go to the PINGs in the order they were taken, the handshake's first")
    func pongsInOrder() {
        var queue = OutboundQueue(maxBytes: 100)
        queue.handshakeSent()
        _ = queue.appendPing(.flush(1), line: ping)
        _ = queue.appendPing(.keepalive, line: ping)
        // Queued PINGs are not written yet: only the handshake's is awaited.
        #expect(queue.pong() == .handshake)
        #expect(queue.pong() == nil)
        _ = queue.take()
        _ = queue.appendPing(.flush(2), line: ping)
        _ = queue.take()
        #expect(queue.pong() == .flush(1))
        #expect(queue.pong() == .keepalive)
        #expect(queue.pong() == .flush(2))
        #expect(queue.pong() == nil)
    }

    @Test("a lost connection fails the flushes it owed; PINGs still queued are sent later and their PONGs ignored")
    func connectionLost() {
        var queue = OutboundQueue(maxBytes: 100)
        queue.handshakeSent()
        #expect(queue.pong() == .handshake)
        _ = queue.appendPing(.flush(1), line: ping)
        _ = queue.take()
        _ = queue.appendPing(.flush(2), line: ping)
        _ = queue.appendPing(.keepalive, line: ping)
        #expect(queue.connectionLost() == [1, 2])
        #expect(queue.bytes == ping + ping)
        // The next connection: handshake first, then the two leftovers once written.
        queue.handshakeSent()
        _ = queue.take()
        _ = queue.appendPing(.flush(3), line: ping)
        _ = queue.take()
        #expect(queue.pong() == .handshake)
        #expect(queue.pong() == .orphaned)
        #expect(queue.pong() == .orphaned)
        #expect(queue.pong() == .flush(3))
    }
}
