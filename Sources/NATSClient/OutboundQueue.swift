/// Bytes waiting for the socket, in the order they were queued, and the `PING`s among them
/// whose `PONG`s are awaited. A value type with no I/O; the connection keeps it under its lock.
///
/// The queue is taken whole, once per event-loop pass, while the connection is up and the
/// socket writable; otherwise it holds on. A server answers `PING`s in order, so each
/// `PONG` belongs to the oldest `PING` written and not yet answered.
///
/// Memory bound: a publish is refused when the queue would pass `maxBytes`. Control lines
/// (`SUB`, `UNSUB`, `PING`) are never refused, so a subscription is never lost; past
/// `maxBytes` the queue holds at most one short line per subscribe, unsubscribe, flush and
/// ping timer tick made meanwhile.
struct OutboundQueue: Sendable {
    /// Why a `PING` was sent: where its `PONG` goes.
    enum PingPurpose: Equatable, Sendable {
        /// The last line of the handshake: its `PONG` means the connection is up.
        case handshake
        /// The ping timer's liveness check.
        case keepalive
        /// A caller's `flush`, by its id.
        case flush(UInt64)
        /// Queued for a connection that was lost before it was written: the next connection
        /// still sends it, and its `PONG` is ignored.
        case orphaned
    }

    enum Appended: Equatable, Sendable {
        /// Queued, and the queue was empty before: schedule one flush task.
        case first
        /// Queued behind bytes that a flush task (or the connection coming up) will write.
        case queued
        /// Not queued: it would pass `maxBytes`.
        case refused
    }

    let maxBytes: Int
    private(set) var bytes: [UInt8] = []
    /// The `PING`s in `bytes`, in order.
    private var queuedPings: [PingPurpose] = []
    /// The `PING`s written to the current connection and not answered, oldest first.
    private var awaited: [PingPurpose] = []
    private var awaitedHead = 0

    init(maxBytes: Int) { self.maxBytes = maxBytes }

    var isEmpty: Bool { bytes.isEmpty }

    /// Queues a `PUB` or `HPUB`, unless the queue would pass `maxBytes`.
    mutating func append(publish line: [UInt8]) -> Appended {
        guard bytes.count + line.count <= maxBytes else { return .refused }
        return append(line)
    }

    /// Queues a `SUB` or `UNSUB`, whatever the queue holds.
    mutating func append(control line: [UInt8]) -> Appended { append(line) }

    /// Queues a `PING`, whatever the queue holds, for `purpose`.
    mutating func appendPing(_ purpose: PingPurpose, line: [UInt8]) -> Appended {
        queuedPings.append(purpose)
        return append(line)
    }

    /// Everything queued, to be written now; the `PING`s in it start waiting for `PONG`s.
    mutating func take() -> [UInt8]? {
        guard !bytes.isEmpty else { return nil }
        awaited.append(contentsOf: queuedPings)
        queuedPings.removeAll(keepingCapacity: true)
        defer { bytes = [] }
        return bytes
    }

    /// A `PONG` arrived: the purpose of the oldest unanswered `PING`, or `nil` when none
    /// was waiting (the server answered something it should not have; it is ignored).
    mutating func pong() -> PingPurpose? {
        guard awaitedHead < awaited.count else { return nil }
        let purpose = awaited[awaitedHead]
        awaitedHead += 1
        if awaitedHead == awaited.count {
            awaited.removeAll(keepingCapacity: true)
            awaitedHead = 0
        }
        return purpose
    }

    /// The handshake's `PING` was written straight to a new connection, ahead of the queue.
    mutating func handshakeSent() {
        awaited = [.handshake]
        awaitedHead = 0
    }

    /// The connection is gone and no `PING` written to it will be answered. `PING`s still
    /// queued go to the next connection, but their flushes are failed now.
    ///
    /// - Returns: the ids of the flushes to fail, oldest first.
    mutating func connectionLost() -> [UInt64] {
        let lost = (awaited[awaitedHead...] + queuedPings).compactMap { purpose -> UInt64? in
            if case .flush(let id) = purpose { id } else { nil }
        }
        awaited.removeAll()
        awaitedHead = 0
        queuedPings = Array(repeating: .orphaned, count: queuedPings.count)
        return lost
    }

    private mutating func append(_ line: [UInt8]) -> Appended {
        let wasEmpty = bytes.isEmpty
        bytes.append(contentsOf: line)
        return wasEmpty ? .first : .queued
    }
}
