@testable import NATSClient
import NIOConcurrencyHelpers
import Testing

@Suite("NATS client: pending completions")
struct PendingCompletionsTests {
    @Test("inserts past the capacity are refused until one completes")
    func capacity() {
        var table = PendingCompletions<Int>(capacity: 2)
        let first = table.insert { _ in }
        let second = table.insert { _ in }
        let third = table.insert { _ in }
        #expect(first != nil && second != nil)
        #expect(third == nil)
        _ = table.remove(first!)
        let fourth = table.insert { _ in }
        #expect(fourth != nil)
        #expect(table.count == 2)
    }

    @Test("an entry is taken out once: a second removal, or a timer attached after it, finds nothing")
    func exactlyOnce() {
        var table = PendingCompletions<Int>(capacity: 10)
        let results = NIOLockedValueBox<[Int]>([])
        let id = table.insert { result in results.withLockedValue { $0.append((try? result.get()) ?? -1) } }!
        table.remove(id)?.complete(.success(7))
        let again = table.remove(id)
        #expect(again == nil)
        let attached = table.attach(cancelTimeout: {}, to: id)
        #expect(!attached)
        #expect(results.withLockedValue { $0 } == [7])
    }

    @Test("completing an entry cancels its timer; removeAll returns the oldest first")
    func cancelAndRemoveAll() {
        var table = PendingCompletions<Int>(capacity: 10)
        let cancelled = NIOLockedValueBox(0)
        let order = NIOLockedValueBox<[Int]>([])
        for value in 1...3 {
            let id = table.insert { _ in order.withLockedValue { $0.append(value) } }!
            let attached = table.attach(cancelTimeout: { cancelled.withLockedValue { $0 += 1 } }, to: id)
            #expect(attached)
        }
        for entry in table.removeAll() { entry.complete(.success(0)) }
        #expect(order.withLockedValue { $0 } == [1, 2, 3])
        #expect(cancelled.withLockedValue { $0 } == 3)
        #expect(table.count == 0)
    }
}
