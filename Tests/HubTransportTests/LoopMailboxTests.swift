import HubIngest
import HubProtocol
import Testing

@testable import HubTransport

@Suite("Fan-out mailbox of one event loop")
struct LoopMailboxTests {
    final class Dashboard {}

    final class Subscription: FanoutSubscription {
        let target: Dashboard
        let metrics: Set<String>?
        init(_ target: Dashboard, metrics: Set<String>? = nil) {
            self.target = target
            self.metrics = metrics
        }
    }

    typealias Mailbox = LoopMailbox<Subscription>

    static func frame(_ seq: UInt64, _ names: [String] = ["t"]) -> AcceptedFrame {
        AcceptedFrame(
            frame: TelemetryFrame(seq: seq, baseTime: 1_000, readings: names.map { Reading(name: $0, offsetMicros: 7, value: .f64(Double(seq))) }),
            receivedAtMicros: 5)
    }

    static func publication(_ device: String, _ seqs: [UInt64], _ subscriptions: [Subscription], names: [String] = ["t"]) -> Mailbox.Publication {
        .init(device: device, frames: seqs.map { frame($0, names) }, subscriptions: subscriptions, local: subscriptions.count)
    }

    /// The seqs of the frames of each queued publication, and "c" for a control message.
    static func describe(_ slice: Mailbox.Slice) -> [String] {
        guard case .items(let items) = slice else { return [] }
        return items.map { item in
            switch item {
            case .publication(let publication): "\(publication.device):" + publication.frames.map { "\($0.frame.seq)" }.joined(separator: ",")
            case .control(_, let text): text
            }
        }
    }

    @Test("under its limits posts queue in order, one drain is asked for, and it goes on while more waits")
    func queueInOrder() {
        var mailbox = Mailbox(limits: .init(maxDeliveries: 100, maxBytes: 1 << 20, sliceDeliveries: 4))
        let subscriptions = [Subscription(Dashboard()), Subscription(Dashboard())]
        let asks = [
            mailbox.publish(Self.publication("a", [1], subscriptions)),
            mailbox.post(control: "presence", to: subscriptions[0].target),
            mailbox.publish(Self.publication("a", [2, 3], subscriptions)),
        ]
        #expect(asks == [true, false, false])
        #expect(mailbox.deliveries == 2 + 4)
        // A slice stops at 4 deliveries: the first publication (2) and the control message fit.
        let first = mailbox.takeSlice()
        #expect(Self.describe(first.slice) == ["a:1", "presence"])
        #expect(first.more)
        let second = mailbox.takeSlice()
        #expect(Self.describe(second.slice) == ["a:2,3"])
        #expect(!second.more && mailbox.isEmpty && mailbox.deliveries == 0 && mailbox.bytes == 0)
        let again = mailbox.publish(Self.publication("a", [4], subscriptions))
        #expect(again, "once drained, the next post asks for a drain again")
    }

    @Test("past its limit a device keeps its newest frame per metric and a count per metric, after the queue it overflowed")
    func conflation() {
        var mailbox = Mailbox(limits: .init(maxDeliveries: 2, maxBytes: 1 << 20, sliceDeliveries: 100))
        let subscription = Subscription(Dashboard())
        _ = mailbox.publish(Self.publication("a", [1, 2], [subscription]))
        _ = mailbox.publish(Self.publication("a", [3], [subscription], names: ["t", "rpm"]))
        _ = mailbox.publish(Self.publication("a", [4], [subscription]))
        _ = mailbox.post(control: "presence", to: subscription.target)
        _ = mailbox.publish(Self.publication("a", [2], [subscription]))  // not newer: ignored
        _ = mailbox.publish(Self.publication("b", [9], [subscription]))
        #expect(mailbox.isConflating)
        let queued = mailbox.takeSlice()
        #expect(Self.describe(queued.slice) == ["a:1,2", "presence"])
        #expect(queued.more && mailbox.isConflating)
        let conflated = mailbox.takeSlice()
        guard case .conflated(let latest) = conflated.slice else { Issue.record("no conflated slice"); return }
        #expect(!conflated.more && !mailbox.isConflating && mailbox.isEmpty)
        #expect(latest["a"]?.newest.mapValues(\.frame.seq) == ["t": 4, "rpm": 3])
        #expect(latest["a"]?.counts == ["t": 2, "rpm": 1])
        let kept = Mailbox.kept(latest["a"]!, for: subscription)
        #expect(kept.frames.map(\.frame.seq) == [3, 4])
        #expect(kept.frames[0].frame.readings.map(\.name) == ["rpm"])
        #expect(kept.dropped == 1, "t of 3 was replaced by t of 4")
        #expect(latest["b"]?.newest.mapValues(\.frame.seq) == ["t": 9])
        // After the drain frames queue again.
        _ = mailbox.publish(Self.publication("a", [5], [subscription]))
        #expect(!mailbox.isConflating)
    }

    @Test("a subscription's metric filter picks what it is given and what it is told it missed")
    func filter() {
        var mailbox = Mailbox(limits: .init(maxDeliveries: 1, maxBytes: 1 << 20, sliceDeliveries: 100))
        let all = Subscription(Dashboard())
        let rpm = Subscription(Dashboard(), metrics: ["rpm"])
        _ = mailbox.publish(Self.publication("a", [1], [all, rpm]))
        for seq: UInt64 in 2...4 { _ = mailbox.publish(Self.publication("a", [seq], [all, rpm], names: ["t", "rpm"])) }
        _ = mailbox.takeSlice()
        guard case .conflated(let latest) = mailbox.takeSlice().slice, let entry = latest["a"] else {
            Issue.record("no conflated slice")
            return
        }
        #expect(Mailbox.kept(entry, for: all).dropped == 4)
        #expect(Mailbox.kept(entry, for: rpm).dropped == 2)
        #expect(Mailbox.kept(entry, for: rpm).frames.map { $0.frame.readings.map(\.name) } == [["rpm"]])
    }

    @Test("a first post over the limits still queues whole; the byte limit conflates as the delivery limit does")
    func limits() {
        var mailbox = Mailbox(limits: .init(maxDeliveries: 1_000, maxBytes: 10, sliceDeliveries: 100))
        let subscription = Subscription(Dashboard())
        _ = mailbox.publish(Self.publication("a", [1, 2, 3], [subscription]))
        #expect(!mailbox.isConflating)
        _ = mailbox.publish(Self.publication("a", [4], [subscription]))
        #expect(mailbox.isConflating)
    }

    @Test("conflated readings go back as one cut-down frame per seq, oldest first")
    func newestFrames() {
        let three = Self.frame(3, ["t", "rpm", "v"])
        let five = Self.frame(5, ["t"])
        let frames = AcceptedFrame.newest(["t": five, "rpm": three, "v": three])
        #expect(frames.map(\.frame.seq) == [3, 5])
        #expect(frames[0].frame.readings.map(\.name) == ["rpm", "v"])
        #expect(frames[0].frame.readings.allSatisfy { $0.offsetMicros == 7 && $0.value == .f64(3) })
        #expect(frames[0].frame.baseTime == 1_000 && frames[0].receivedAtMicros == 5)
        #expect(frames[1].frame.readings.map(\.name) == ["t"])
    }
}
