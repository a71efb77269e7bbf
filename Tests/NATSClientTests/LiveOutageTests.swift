import NATS
import NATSClient
import Testing

@Suite("NATS client, live: outages and limits", .serialized)
struct LiveOutageTests {
    @Test("after the server is killed and restarted on the same port, the client reconnects on its own, runs the reconnect handler, and an old subscription gets new messages")
    func reconnectsAndResubscribes() async throws {
        try await withLiveServer { live in
            let subscriber = try await live.connection("subscriber")
            let publisher = try await live.connection("publisher")
            let reconnects = Counter()
            let disconnects = Counter()
            subscriber.onReconnect { reconnects.increment() }
            subscriber.onDisconnect { disconnects.increment() }
            let received = Received()
            subscriber.subscribe(subject: "after.outage", handler: received.handler)
            try await subscriber.flush()
            #expect(reconnects.value == 0)

            live.server.kill()
            try await eventually("the subscriber saw the outage") { !subscriber.isConnected && disconnects.value == 1 }
            try await live.server.start()
            try await eventually("both reconnected", within: 10) {
                subscriber.isConnected && publisher.isConnected && reconnects.value == 1
            }
            for index in 0..<10 { publisher.publish(subject: "after.outage", payload: [UInt8(index)]) }
            try await eventually("the 10 messages after the outage arrived") { received.count == 10 }
            #expect(received.messages.map(\.payload) == (0..<10).map { [UInt8($0)] })
            #expect(disconnects.value == 1)
        }
    }

    @Test("publishes while disconnected are bounded by maxPendingBytes and the rest counted as dropped")
    func pendingIsBounded() async throws {
        try await withLiveServer { live in
            let payload = [UInt8](repeating: 0x61, count: 1_000)
            let line = try NATSEncoder.publish(subject: "pending.bound", payload: payload)
            let publisher = try await live.connection("publisher") { $0.maxPendingBytes = line.count * 10 }
            live.server.kill()
            try await eventually("the publisher saw the outage") { !publisher.isConnected }
            for _ in 0..<25 { publisher.publish(subject: "pending.bound", payload: payload) }
            #expect(publisher.droppedPublishes == 15)

            try await live.server.start()
            try await eventually("the publisher reconnected", within: 10) { publisher.isConnected }
            try await publisher.flush()
            for _ in 0..<5 { publisher.publish(subject: "pending.bound", payload: payload) }
            try await publisher.flush()
            #expect(publisher.droppedPublishes == 15)
        }
    }

    @Test("a message bigger than the server's max_payload is not sent and is counted; the connection stays up")
    func overMaxPayload() async throws {
        try await withLiveServer(maxPayload: 1_024) { live in
            let subscriber = try await live.connection("subscriber")
            let publisher = try await live.connection("publisher")
            let disconnects = Counter()
            publisher.onDisconnect { disconnects.increment() }
            let received = Received()
            subscriber.subscribe(subject: "big.check", handler: received.handler)
            try await subscriber.flush()

            publisher.publish(subject: "big.check", payload: [1])
            publisher.publish(subject: "big.check", payload: [UInt8](repeating: 2, count: 1_025))
            publisher.publish(subject: "big.check", payload: [UInt8](repeating: 3, count: 1_024))
            await #expect(throws: NATSRequestError.notSent) {
                _ = try await publisher.request(
                    subject: "big.check", payload: [UInt8](repeating: 4, count: 2_000), timeoutNanos: 1_000_000_000)
            }
            publisher.publish(subject: "big.check", payload: [5])
            try await publisher.flush()
            try await eventually("the three allowed messages arrived") { received.count == 3 }
            #expect(received.messages.map { $0.payload.first } == [1, 3, 5])
            #expect(received.messages[1].payload.count == 1_024)
            #expect(publisher.droppedPublishes == 2)
            #expect(publisher.isConnected)
            #expect(disconnects.value == 0)
        }
    }

    @Test("a publish with an invalid subject is dropped and counted, and the connection stays up")
    func invalidSubject() async throws {
        try await withLiveServer { live in
            let publisher = try await live.connection("publisher")
            publisher.publish(subject: "has space", payload: [1])
            publisher.publish(subject: "", payload: [1])
            publisher.publish(subject: "ok", replyTo: "bad\r\nPUB x 1", payload: [1])
            try await publisher.flush()
            #expect(publisher.droppedPublishes == 3)
            #expect(publisher.isConnected)
        }
    }
}
