import NATS
import NATSClient
import Testing

@Suite("NATS client, live: publish and subscribe", .serialized)
struct LivePublishTests {
    /// Payload `index`: the index in four bytes, then bytes that include NUL, CR, LF and
    /// spaces, of a length that varies from 0 to 299.
    static func payload(_ index: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt32(index).bigEndian, Array.init)
            + (0..<(index * 7 % 300)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
    }

    @Test("a publish reaches a subscriber on a second connection, in order: 1,000 messages, payloads byte for byte")
    func publishReachesSubscriber() async throws {
        try await withLiveServer { live in
            let subscriber = try await live.connection("subscriber")
            let publisher = try await live.connection("publisher")
            let received = Received()
            subscriber.subscribe(subject: "telemetry.order", handler: received.handler)
            try await subscriber.flush()
            for index in 0..<1_000 { publisher.publish(subject: "telemetry.order", payload: Self.payload(index)) }
            try await eventually("1,000 messages arrived") { received.count >= 1_000 }
            let messages = received.messages
            #expect(messages.count == 1_000)
            for (index, message) in messages.enumerated() {
                guard message.payload == Self.payload(index), message.subject == "telemetry.order" else {
                    Issue.record("message \(index) differs: \(message.payload.count) bytes")
                    return
                }
            }
            #expect(publisher.droppedPublishes == 0)
        }
    }

    @Test("echo is off: a connection does not receive its own publishes on a subject it subscribes to")
    func echoIsOff() async throws {
        try await withLiveServer { live in
            let own = try await live.connection("own")
            let other = try await live.connection("other")
            let ownReceived = Received()
            let otherReceived = Received()
            own.subscribe(subject: "echo.check", handler: ownReceived.handler)
            other.subscribe(subject: "echo.check", handler: otherReceived.handler)
            try await own.flush()
            try await other.flush()
            for index in 0..<10 { own.publish(subject: "echo.check", payload: [UInt8(index)]) }
            // The server handles the PUBs before this PING, and would have written any echo
            // to `own` before the PONG.
            try await own.flush()
            try await eventually("the other connection got all 10") { otherReceived.count == 10 }
            #expect(ownReceived.count == 0)
        }
    }

    @Test("unsubscribe stops delivery")
    func unsubscribeStops() async throws {
        try await withLiveServer { live in
            let subscriber = try await live.connection("subscriber")
            let publisher = try await live.connection("publisher")
            let stopped = Received()
            let subscription = subscriber.subscribe(subject: "unsub.check", handler: stopped.handler)
            try await subscriber.flush()
            for index in 0..<5 { publisher.publish(subject: "unsub.check", payload: [UInt8(index)]) }
            try await eventually("the first 5 arrived") { stopped.count == 5 }

            subscriber.unsubscribe(subscription)
            let control = Received()
            subscriber.subscribe(subject: "unsub.check", handler: control.handler)
            try await subscriber.flush()
            for index in 5..<10 { publisher.publish(subject: "unsub.check", payload: [UInt8(index)]) }
            try await eventually("the control subscription got the next 5") { control.count == 5 }
            #expect(stopped.count == 5)
            #expect(control.messages.map(\.payload) == (5..<10).map { [UInt8($0)] })
        }
    }

    @Test("publishes made before the first connect wait in the pending buffer and go out, in order, once connected")
    func publishesBeforeConnectWait() async throws {
        try await withLiveServer { live in
            let subscriber = try await live.connection("subscriber")
            let received = Received()
            subscriber.subscribe(subject: "early.bird", handler: received.handler)
            try await subscriber.flush()
            let publisher = try await live.connection("publisher", start: false)
            for index in 0..<20 { publisher.publish(subject: "early.bird", payload: [UInt8(index)]) }
            #expect(!publisher.isConnected)
            publisher.start()
            try await eventually("the 20 early publishes arrived") { received.count == 20 }
            #expect(received.messages.map(\.payload) == (0..<20).map { [UInt8($0)] })
        }
    }
}
