import NATS
import NATSClient
import Testing

@Suite("NATS client, live: request and reply", .serialized)
struct LiveRequestTests {
    @Test("requests between two connections get their own replies")
    func requestReply() async throws {
        try await withLiveServer { live in
            let responder = try await live.connection("responder")
            let requester = try await live.connection("requester")
            responder.subscribe(subject: "svc.reverse") { message in
                guard let replyTo = message.replyTo else { return }
                responder.publish(subject: replyTo, payload: message.payload.reversed())
            }
            try await responder.flush()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let payload = Array("request \(index)".utf8)
                        let reply = try await requester.request(
                            subject: "svc.reverse", payload: payload, timeoutNanos: 2_000_000_000)
                        #expect(reply.payload == payload.reversed())
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test("a request to a subject nobody subscribes to fails with no responders (or times out) within its bound")
    func noResponders() async throws {
        try await withLiveServer { live in
            let requester = try await live.connection("requester")
            let started = ContinuousClock.now
            await #expect(throws: NATSRequestError.self) {
                _ = try await requester.request(subject: "svc.nobody", payload: [1], timeoutNanos: 500_000_000)
            }
            do {
                _ = try await requester.request(subject: "svc.nobody", payload: [1], timeoutNanos: 500_000_000)
            } catch let error as NATSRequestError {
                #expect(error == .noResponders || error == .timedOut)
            }
            #expect(ContinuousClock.now - started < .seconds(2))
        }
    }

    @Test("a request whose subscriber never replies times out after its timeout, not before")
    func timesOut() async throws {
        try await withLiveServer { live in
            let silent = try await live.connection("silent")
            let requester = try await live.connection("requester")
            let asked = Counter()
            silent.subscribe(subject: "svc.silent") { _ in asked.increment() }
            try await silent.flush()
            let started = ContinuousClock.now
            await #expect(throws: NATSRequestError.timedOut) {
                _ = try await requester.request(subject: "svc.silent", payload: [1], timeoutNanos: 300_000_000)
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(300))
            #expect(elapsed < .seconds(2))
            #expect(asked.value == 1)
        }
    }

    @Test("shutdown fails pending requests, returns, and is idempotent")
    func shutdownFailsPending() async throws {
        try await withLiveServer { live in
            let silent = try await live.connection("silent")
            let requester = try await live.connection("requester")
            silent.subscribe(subject: "svc.silent") { _ in }
            try await silent.flush()
            let failures = Counter()
            let completions = Counter()
            for _ in 0..<3 {
                requester.request(subject: "svc.silent", payload: [1], timeoutNanos: 60_000_000_000) { result in
                    completions.increment()
                    if case .failure(let error as NATSRequestError) = result, error == .shutDown { failures.increment() }
                }
            }
            try await requester.flush()
            let shutdownDone = Counter()
            let task = Task {
                await requester.shutdown()
                shutdownDone.increment()
            }
            try await eventually("shutdown returned") { shutdownDone.value == 1 }
            await task.value
            #expect(failures.value == 3)
            #expect(completions.value == 3)
            #expect(!requester.isConnected)
            await requester.shutdown()
            await #expect(throws: NATSRequestError.shutDown) {
                _ = try await requester.request(subject: "svc.silent", payload: [1], timeoutNanos: 1_000_000_000)
            }
            #expect(completions.value == 3)
        }
    }
}
