/// The life of a connection as a value-type state machine: it takes what happened and
/// returns what to do. It does no I/O; the connection performs the actions on its loop.
///
/// idle → connecting → awaitingInfo → awaitingPong → connected; a failure or a lost
/// connection goes to waiting (the backoff) and back to connecting, until shutDown.
/// `attempt` counts the connection attempts that failed in a row, for the backoff.
struct ConnectionLifecycle: Sendable {
    enum State: Equatable, Sendable {
        case idle
        /// The TCP connect is in flight.
        case connecting(attempt: Int)
        /// TCP is up; the server's `INFO` has not come.
        case awaitingInfo(attempt: Int)
        /// `CONNECT`, every `SUB` and a `PING` are sent; its `PONG` has not come.
        case awaitingPong(attempt: Int)
        case connected
        /// Backing off before connection attempt `attempt`.
        case waiting(attempt: Int)
        case shutDown
    }

    enum Action: Equatable, Sendable {
        case none
        /// Open a TCP connection.
        case connect
        /// Send `CONNECT`, every `SUB` and a `PING`.
        case sendHandshake
        /// The connection is up: write what is queued, start the ping timer and, for a
        /// reconnect, call the reconnect handlers.
        case becameConnected(isReconnect: Bool)
        /// Send a keepalive `PING`.
        case sendPing
        /// Close the channel; its going inactive comes back as `channelInactive`.
        case close(CloseReason)
        /// The channel is gone: after the backoff for `attempt`, connect again. Call the
        /// disconnect handlers when it `wasConnected`.
        case reconnectLater(attempt: Int, wasConnected: Bool)
        /// Shut down while a channel was open: close it.
        case closeForShutdown
        /// Shut down with no channel open (or about to be): nothing to wait for.
        case shutDownNow
    }

    private(set) var state = State.idle
    /// Whether a connection was up before: the next one is a reconnect.
    private(set) var hasConnected = false
    private(set) var pingsOutstanding = 0
    let maxPingsOutstanding: Int

    init(maxPingsOutstanding: Int) { self.maxPingsOutstanding = maxPingsOutstanding }

    mutating func start() -> Action {
        guard state == .idle else { return .none }
        state = .connecting(attempt: 0)
        return .connect
    }

    mutating func connectSucceeded() -> Action {
        switch state {
        case .connecting(let attempt):
            state = .awaitingInfo(attempt: attempt)
            return .none
        case .shutDown:
            return .closeForShutdown
        default:
            // Cannot happen: only one connect is ever in flight.
            return .close(.connectionLost)
        }
    }

    mutating func connectFailed() -> Action {
        switch state {
        case .connecting(let attempt):
            state = .waiting(attempt: attempt + 1)
            return .reconnectLater(attempt: attempt + 1, wasConnected: false)
        case .shutDown:
            return .shutDownNow
        default:
            return .none
        }
    }

    /// A valid `INFO` arrived. Later ones (a cluster's updates) need nothing more.
    mutating func receivedInfo() -> Action {
        guard case .awaitingInfo(let attempt) = state else { return .none }
        state = .awaitingPong(attempt: attempt)
        return .sendHandshake
    }

    /// The `PONG` to the handshake's `PING` arrived.
    mutating func handshakeAnswered() -> Action {
        guard case .awaitingPong = state else { return .none }
        state = .connected
        pingsOutstanding = 0
        defer { hasConnected = true }
        return .becameConnected(isReconnect: hasConnected)
    }

    /// Any `PONG` shows the server is alive.
    mutating func receivedPong() {
        pingsOutstanding = 0
    }

    mutating func pingTimerFired() -> Action {
        guard state == .connected else { return .none }
        guard pingsOutstanding < maxPingsOutstanding else { return .close(.staleConnection) }
        pingsOutstanding += 1
        return .sendPing
    }

    mutating func handshakeTimedOut() -> Action {
        switch state {
        case .awaitingInfo, .awaitingPong: .close(.handshakeTimeout)
        default: .none
        }
    }

    mutating func channelInactive() -> Action {
        switch state {
        case .awaitingInfo(let attempt), .awaitingPong(let attempt):
            state = .waiting(attempt: attempt + 1)
            return .reconnectLater(attempt: attempt + 1, wasConnected: false)
        case .connected:
            state = .waiting(attempt: 0)
            return .reconnectLater(attempt: 0, wasConnected: true)
        case .shutDown:
            return .shutDownNow
        case .idle, .connecting, .waiting:
            return .none
        }
    }

    mutating func backoffFired() -> Action {
        guard case .waiting(let attempt) = state else { return .none }
        state = .connecting(attempt: attempt)
        return .connect
    }

    mutating func shutdown() -> Action {
        let previous = state
        state = .shutDown
        switch previous {
        case .awaitingInfo, .awaitingPong, .connected: return .closeForShutdown
        // A connect in flight ends in connectSucceeded or connectFailed, which finish it.
        case .connecting: return .none
        case .idle, .waiting: return .shutDownNow
        case .shutDown: return .none
        }
    }
}
