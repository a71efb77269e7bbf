@testable import NATSClient
import Testing

@Suite("NATS client: connection lifecycle")
struct ConnectionLifecycleTests {
    /// A machine taken through a first connect up to the handshake's PONG.
    func connected() -> ConnectionLifecycle {
        var machine = ConnectionLifecycle(maxPingsOutstanding: 2)
        _ = machine.start()
        _ = machine.connectSucceeded()
        _ = machine.receivedInfo()
        _ = machine.handshakeAnswered()
        return machine
    }

    @Test("a first connect: TCP, INFO, the handshake, then up when its PONG comes, not a reconnect")
    func firstConnect() {
        var machine = ConnectionLifecycle(maxPingsOutstanding: 2)
        #expect(machine.start() == .connect)
        #expect(machine.start() == .none)
        #expect(machine.connectSucceeded() == .none)
        #expect(machine.state == .awaitingInfo(attempt: 0))
        #expect(machine.receivedInfo() == .sendHandshake)
        #expect(machine.receivedInfo() == .none)
        #expect(machine.handshakeAnswered() == .becameConnected(isReconnect: false))
        #expect(machine.state == .connected)
    }

    @Test("a lost connection backs off from attempt 0, tells the disconnect handlers, and comes back as a reconnect")
    func reconnect() {
        var machine = connected()
        #expect(machine.channelInactive() == .reconnectLater(attempt: 0, wasConnected: true))
        #expect(machine.backoffFired() == .connect)
        #expect(machine.connectSucceeded() == .none)
        #expect(machine.receivedInfo() == .sendHandshake)
        #expect(machine.handshakeAnswered() == .becameConnected(isReconnect: true))
    }

    @Test("failed attempts in a row raise the backoff attempt; a connection up resets it")
    func attemptsGrow() {
        var machine = connected()
        _ = machine.channelInactive()
        _ = machine.backoffFired()
        #expect(machine.connectFailed() == .reconnectLater(attempt: 1, wasConnected: false))
        _ = machine.backoffFired()
        #expect(machine.connectFailed() == .reconnectLater(attempt: 2, wasConnected: false))
        _ = machine.backoffFired()
        _ = machine.connectSucceeded()
        // Closed before the handshake finished: still a failed attempt.
        #expect(machine.channelInactive() == .reconnectLater(attempt: 3, wasConnected: false))
        _ = machine.backoffFired()
        _ = machine.connectSucceeded()
        _ = machine.receivedInfo()
        _ = machine.handshakeAnswered()
        #expect(machine.channelInactive() == .reconnectLater(attempt: 0, wasConnected: true))
    }

    @Test("the ping timer closes the connection as stale after the allowed unanswered PINGs; a PONG resets it")
    func stale() {
        var machine = connected()
        #expect(machine.pingTimerFired() == .sendPing)
        #expect(machine.pingTimerFired() == .sendPing)
        machine.receivedPong()
        #expect(machine.pingTimerFired() == .sendPing)
        #expect(machine.pingTimerFired() == .sendPing)
        #expect(machine.pingTimerFired() == .close(.staleConnection))
    }

    @Test("the handshake timer closes only a connection still in its handshake")
    func handshakeTimeout() {
        var machine = ConnectionLifecycle(maxPingsOutstanding: 2)
        _ = machine.start()
        _ = machine.connectSucceeded()
        #expect(machine.handshakeTimedOut() == .close(.handshakeTimeout))
        _ = machine.receivedInfo()
        #expect(machine.handshakeTimedOut() == .close(.handshakeTimeout))
        _ = machine.handshakeAnswered()
        #expect(machine.handshakeTimedOut() == .none)
    }

    @Test("shutdown closes an open channel, finishes at once without one, and waits for a connect in flight")
    func shutdown() {
        var open = connected()
        #expect(open.shutdown() == .closeForShutdown)
        #expect(open.channelInactive() == .shutDownNow)
        #expect(open.shutdown() == .none)

        var idle = ConnectionLifecycle(maxPingsOutstanding: 2)
        #expect(idle.shutdown() == .shutDownNow)
        #expect(idle.start() == .none)

        var waiting = connected()
        _ = waiting.channelInactive()
        #expect(waiting.shutdown() == .shutDownNow)
        #expect(waiting.backoffFired() == .none)

        var connecting = ConnectionLifecycle(maxPingsOutstanding: 2)
        _ = connecting.start()
        #expect(connecting.shutdown() == .none)
        #expect(connecting.connectSucceeded() == .closeForShutdown)
        var failing = ConnectionLifecycle(maxPingsOutstanding: 2)
        _ = failing.start()
        _ = failing.shutdown()
        #expect(failing.connectFailed() == .shutDownNow)
    }
}
