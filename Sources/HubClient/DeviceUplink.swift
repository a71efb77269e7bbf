import DequeModule
import Foundation
import HubProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A device that keeps its telemetry flowing to a hub: the Swift kit, with the Python kit's
/// features.
///
/// - Frames wait in a bounded buffer (default 10,000) until the hub acks them, optionally
///   mirrored to an on-disk spool so a reboot loses none.
/// - It reconnects with capped exponential backoff and jitter, resumes from the welcome's
///   `last_seq`, and re-sends what is still unacked.
/// - Command handlers are registered by name; it sends `command_ack` when a command
///   arrives and `command_result` with the handler's outcome.
///
/// `send` waits while the buffer is full (flow control) and, when no spool remembers the
/// sequence, until the first welcome tells it. Nothing is ever dropped.
public final class DeviceUplink: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var deviceID: String
        public var token: String?
        /// Unacked frames held (and spooled); `send` waits beyond it.
        public var maxBufferedFrames = 10_000
        /// A spool file for unacked frames; `nil` keeps them in memory only.
        public var spoolPath: String?
        /// fsync every spooled frame (a power cut loses nothing `send` returned for).
        public var spoolSync = true
        public var initialBackoff: Duration = .milliseconds(500)
        public var maxBackoff: Duration = .seconds(30)

        public init(host: String, port: Int, deviceID: String, token: String?) {
            self.host = host
            self.port = port
            self.deviceID = deviceID
            self.token = token
        }
    }

    /// A command from the hub.
    public struct Command: Sendable {
        public let id: String
        public let name: String
        /// The params object as JSON text.
        public let paramsJSON: String
        public let expiresAtMicros: Int64

        /// The params object.
        public var params: JSONValue {
            RawJSON(paramsJSON).value
        }
    }

    public enum Outcome: Sendable {
        /// Done; `resultJSON` is a JSON value's text (`null` if it is not JSON).
        case ok(resultJSON: String = "{}")
        case failed(String)
    }

    public typealias Handler = @Sendable (Command) async -> Outcome

    public enum Failure: Error, Equatable {
        case closed
        case invalidFrame(FrameError.Code)
        case frameTooLarge(bytes: Int, limit: Int)
    }

    public let configuration: Configuration
    private let group: EventLoopGroup
    private let lock = NIOLock()
    private var buffer = Deque<(seq: UInt64, bytes: [UInt8])>()
    private var spool: FrameSpool?
    /// The highest seq assigned or known to be stored.
    private var lastSeq: UInt64 = 0
    private var seqKnown = false
    private var acked: UInt64 = 0
    private var client: DeviceClient?
    private var welcome: DeviceClient.Welcome?
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Counts wake-ups, so a waiter that checked before one does not miss it.
    private var generation = 0
    /// Commands that arrived before the connection was recorded as welcomed.
    private var early: [Command] = []
    private var handlers: [String: Handler] = [:]
    /// Results of recent commands, re-sent if the hub sends the same id again.
    private var answered: [String: String] = [:]
    private var answeredOrder = Deque<String>()
    private var running: Set<String> = []
    private var closing = false
    private var task: Task<Void, Never>?
    private var connects = 0

    /// Opens the spool, if any; call `start()` to connect.
    public init(_ configuration: Configuration, group: EventLoopGroup) throws {
        self.configuration = configuration
        self.group = group
        if let path = configuration.spoolPath {
            let spool = FrameSpool(path: path, sync: configuration.spoolSync)
            let (frames, acked) = try spool.load()
            buffer.append(contentsOf: frames)
            try spool.rewrite(frames: frames.map(\.bytes), acked: acked)
            self.spool = spool
            self.acked = acked
            lastSeq = max(acked, frames.last?.seq ?? 0)
            seqKnown = lastSeq > 0
        }
    }

    /// Registers the handler for commands named `name`; unknown names fail with "unsupported".
    public func onCommand(_ name: String, _ handler: @escaping Handler) {
        lock.withLock { handlers[name] = handler }
    }

    /// Starts connecting in the background.
    public func start() {
        lock.withLock {
            guard task == nil else { return }
            task = Task { await run() }
        }
    }

    /// Frames waiting for an ack.
    public var pending: Int { lock.withLock { buffer.count } }
    /// Welcomes received (1 + reconnects).
    public var connections: Int { lock.withLock { connects } }
    /// The current connection's welcome, if connected.
    public var currentWelcome: DeviceClient.Welcome? { lock.withLock { client == nil ? nil : welcome } }

    /// Queues one frame and returns its seq. `baseTime` is microseconds since the epoch
    /// (`nil`: now; 0: the hub's receive time).
    @discardableResult
    public func send(_ readings: [Reading], baseTime: Int64? = nil) async throws -> UInt64 {
        var frame = TelemetryFrame(seq: 1, baseTime: baseTime ?? Int64(Date().timeIntervalSince1970 * 1_000_000), readings: readings)
        do {
            _ = try TelemetryFrame(decoding: frame.encoded(), receivedAtMicros: 0)
        } catch {
            throw Failure.invalidFrame(error.code)
        }
        while true {
            let seen = lock.withLock { generation }
            let outcome: Result<UInt64, Error>? = lock.withLock {
                if closing { return .failure(Failure.closed) }
                guard seqKnown, buffer.count < configuration.maxBufferedFrames else { return nil }
                frame.seq = lastSeq + 1
                let bytes = frame.encoded()
                if let limit = welcome?.maxFrameBytes, limit > 0, bytes.count > limit {
                    return .failure(Failure.frameTooLarge(bytes: bytes.count, limit: limit))
                }
                do {
                    try spool?.append(frame: bytes)
                } catch {
                    return .failure(error)
                }
                lastSeq = frame.seq
                buffer.append((frame.seq, bytes))
                client?.sendBinary(bytes)
                return .success(frame.seq)
            }
            if let outcome { return try outcome.get() }
            await changed(since: seen)
        }
    }

    /// Waits until every frame sent so far is acked. - Returns: false on timeout.
    public func waitAcked(timeout: Duration) async -> Bool {
        await waitFor(timeout: timeout) { $0.buffer.isEmpty }
    }

    /// Waits for a welcome. - Returns: false on timeout.
    public func waitConnected(timeout: Duration) async -> Bool {
        await waitFor(timeout: timeout) { $0.client != nil }
    }

    /// Waits up to `timeout` for outstanding acks, then closes with 1000. Unacked frames
    /// stay in the spool, if there is one.
    public func close(timeout: Duration = .seconds(10)) async {
        _ = await waitAcked(timeout: timeout)
        let (client, task) = lock.withLock {
            closing = true
            return (self.client, self.task)
        }
        wakeAll()
        await client?.close()
        task?.cancel()
        await task?.value
    }

    /// Drops the current connection without a close frame, as a network failure would;
    /// the uplink reconnects after its backoff and resumes.
    public func interrupt() async {
        await lock.withLock { client }?.abort()
    }

    // MARK: - Connection

    private func run() async {
        var backoff = configuration.initialBackoff
        while !lock.withLock({ closing }) && !Task.isCancelled {
            do {
                let client = try await DeviceClient.connect(
                    host: configuration.host, port: configuration.port, deviceID: configuration.deviceID,
                    token: configuration.token, group: group, onEvent: { [weak self] event in self?.handle(event) })
                guard welcomed(client) else {
                    // `close()` ran while this connection was being made: it is not kept.
                    await client.close()
                    return
                }
                backoff = configuration.initialBackoff
                try? await client.channel.closeFuture.get()
                lock.withLock { if self.client === client { self.client = nil } }
                wakeAll()
            } catch {
                // Refused, unauthorised or unreachable: try again after the backoff.
            }
            guard !lock.withLock({ closing }) else { return }
            let jitter = Double.random(in: 0.5...1.5)
            try? await Task.sleep(for: backoff * jitter)
            backoff = min(backoff * 2, configuration.maxBackoff)
        }
    }

    /// Resumes: drops what the hub already has, continues the sequence above it, and re-sends
    /// the rest in order before any new frame.
    /// - Returns: false if the uplink is closing; the connection is then not taken.
    private func welcomed(_ client: DeviceClient) -> Bool {
        let stored = client.welcome.lastSeq
        let taken = lock.withLock {
            // Decided under the lock `close()` takes: either it sees this client or this sees it closing.
            guard !closing else { return false }
            welcome = client.welcome
            connects += 1
            dropAcked(upTo: stored)
            lastSeq = max(lastSeq, stored)
            seqKnown = true
            for frame in buffer { client.sendBinary(frame.bytes, flush: false) }
            client.flush()
            self.client = client
            return true
        }
        guard taken else { return false }
        wakeAll()
        for command in lock.withLock({ defer { early = [] }; return early }) { received(command) }
        return true
    }

    private func handle(_ event: DeviceClient.Event) {
        switch event {
        case .ack(let seq):
            lock.withLock { dropAcked(upTo: seq) }
            wakeAll()
        case .text(let text):
            guard MessageEnvelope.read(text)?.type == .some(.some(DeviceCommand.type)), let message = try? DeviceCommand.decode(text)
            else { return }
            received(Command(id: message.id, name: message.name, paramsJSON: message.params.text, expiresAtMicros: message.expiresAtMicros))
        case .closed:
            break
        }
    }

    /// Acks the command and runs its handler once; a repeated id gets the same result again.
    private func received(_ command: Command) {
        let (client, handler, earlier) = lock.withLock { () -> (DeviceClient?, Handler?, String?) in
            if self.client == nil {
                early.append(command)
                return (nil, nil, nil)
            }
            if running.contains(command.id) { return (nil, nil, nil) }
            if let result = answered[command.id] { return (self.client, nil, result) }
            running.insert(command.id)
            return (self.client, handlers[command.name], nil)
        }
        guard let client else { return }
        client.sendText(CommandAck(id: command.id).json)
        if let earlier {
            client.sendText(earlier)
            return
        }
        Task {
            let outcome = await handler?(command) ?? .failed("unsupported")
            let result = switch outcome {
            case .ok(let json): CommandResult(id: command.id, ok: true, result: RawJSON(json).value).json
            case .failed(let error): CommandResult(id: command.id, ok: false, error: .string(error)).json
            }
            let current = lock.withLock {
                running.remove(command.id)
                answered[command.id] = result
                answeredOrder.append(command.id)
                if answeredOrder.count > 1_000 { answered[answeredOrder.removeFirst()] = nil }
                return self.client
            }
            current?.sendText(result)
        }
    }

    // MARK: - Buffer

    /// Called with the lock held.
    private func dropAcked(upTo seq: UInt64) {
        guard seq > acked else { return }
        acked = seq
        var dropped: [[UInt8]] = []
        while let first = buffer.first, first.seq <= seq { dropped.append(buffer.removeFirst().bytes) }
        try? spool?.ack(seq, dropped: dropped, remaining: buffer.map(\.bytes))
    }

    /// Returns after the next wake-up, or at once if there was one since `seen`.
    private func changed(since seen: Int) async {
        await withCheckedContinuation { continuation in
            let now = lock.withLock {
                if generation == seen { waiters.append(continuation) }
                return generation != seen
            }
            if now { continuation.resume() }
        }
    }

    private func wakeAll() {
        let woken = lock.withLock {
            generation += 1
            defer { waiters = [] }
            return waiters
        }
        woken.forEach { $0.resume() }
    }

    private func waitFor(timeout: Duration, _ condition: @escaping (DeviceUplink) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        let alarm = Task { [weak self] in
            try? await Task.sleep(until: deadline)
            self?.wakeAll()
        }
        defer { alarm.cancel() }
        while true {
            let (met, seen, stopping): (Bool, Int, Bool) = lock.withLock { (condition(self), self.generation, self.closing) }
            if met { return true }
            guard ContinuousClock.now < deadline, !stopping else { return false }
            await changed(since: seen)
        }
    }
}
