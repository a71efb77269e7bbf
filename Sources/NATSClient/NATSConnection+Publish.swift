import NATS
import NIOCore

extension NATSConnection {
    /// Why a publish was dropped instead of queued; logged with the count.
    enum DropReason: String, Error, Sendable {
        /// The encoder refused the subject or reply-to (empty, or a space, tab, CR or LF).
        case invalidSubject = "invalid_subject"
        /// Over the server's `max_payload`: the server would close the connection for it.
        case overMaxPayload = "over_max_payload"
        /// The pending buffer would pass `maxPendingBytes`.
        case pendingFull = "pending_full"
        case shutDown = "shut_down"
    }

    /// Publishes `payload` to `subject`. Never blocks; callable from any thread.
    ///
    /// The bytes join one pending buffer under the lock, and one flush task per event-loop
    /// pass writes the buffer, so a burst of publishes becomes one socket write. While the
    /// connection is down or the socket not writable the buffer holds on, up to
    /// `maxPendingBytes`.
    ///
    /// A publish that cannot be sent is dropped and counted in `droppedPublishes`, not
    /// thrown: an invalid subject or reply-to (the encoder refuses it), a payload over the
    /// server's `max_payload`, a full pending buffer, or after shutdown.
    public func publish(subject: String, replyTo: String? = nil, payload: [UInt8]) {
        _ = enqueuePublish(subject: subject, replyTo: replyTo, payload: payload)
    }

    /// Queues a publish. - Returns: why it was dropped, or `nil` when it was queued.
    func enqueuePublish(subject: String, replyTo: String?, payload: [UInt8]) -> DropReason? {
        let line: [UInt8]
        do {
            line = try NATSEncoder.publish(subject: subject, replyTo: replyTo, payload: payload)
        } catch {
            return drop(.invalidSubject, count: shared.withLockedValue { $0.droppedPublishes += 1; return $0.droppedPublishes })
        }
        let outcome: Result<OutboundQueue.Appended, DropReason> = shared.withLockedValue { state in
            let reason: DropReason
            if state.isShutDown {
                reason = .shutDown
            } else if payload.count > state.maxPayload {
                reason = .overMaxPayload
            } else {
                let appended = state.outbound.append(publish: line)
                guard appended == .refused else { return .success(appended) }
                reason = .pendingFull
            }
            state.droppedPublishes += 1
            return .failure(reason)
        }
        switch outcome {
        case .success(let appended):
            if appended == .first { scheduleWrite() }
            return nil
        case .failure(let reason):
            return drop(reason, count: droppedPublishes)
        }
    }

    /// Logs a drop when the count reaches a power of two: a storm logs a few lines, not one
    /// per publish.
    private func drop(_ reason: DropReason, count: Int) -> DropReason {
        if count > 0, count & (count - 1) == 0 {
            logger.warning("NATS publish dropped", metadata: ["reason": "\(reason.rawValue)", "dropped": "\(count)"])
        }
        return reason
    }

    /// Subscribes to `subject` (with a wildcard, or in a queue group, as NATS allows).
    ///
    /// `handler` runs on the connection's event loop, in order, for every message of this
    /// subscription; it must not block. The subscription is remembered and sent again on
    /// every reconnect until `unsubscribe`. A subject or queue group the encoder refuses
    /// (empty, or with a space, tab, CR or LF) is logged, and the subscription returned
    /// (with an empty sid) never receives anything.
    @discardableResult
    public func subscribe(
        subject: String, queueGroup: String? = nil, handler: @escaping @Sendable (Message) -> Void
    ) -> NATSSubscription {
        let made: (NATSSubscription, OutboundQueue.Appended?)? = shared.withLockedValue { state in
            let sid = String(state.nextSid)
            guard let line = try? NATSEncoder.subscribe(subject: subject, queueGroup: queueGroup, sid: sid) else {
                return nil
            }
            state.nextSid += 1
            state.subscriptions[sid] = SharedState.Subscription(subject: subject, line: line, handler: handler)
            // Before the handshake takes the SUBs, it will send this one; after, queue it.
            let appended = state.subscriptionsSent ? state.outbound.append(control: line) : nil
            return (NATSSubscription(sid: sid, subject: subject), appended)
        }
        guard let (subscription, appended) = made else {
            logger.error("NATS subscribe refused: invalid subject or queue group")
            return NATSSubscription(sid: "", subject: subject)
        }
        if appended == .first { scheduleWrite() }
        return subscription
    }

    /// Stops the subscription: its handler is not called for any message looked up after
    /// this returns, and the server is sent `UNSUB`. Unknown subscriptions are ignored.
    public func unsubscribe(_ subscription: NATSSubscription) {
        let appended: OutboundQueue.Appended? = shared.withLockedValue { state in
            guard state.subscriptions.removeValue(forKey: subscription.sid) != nil,
                  let line = try? NATSEncoder.unsubscribe(sid: subscription.sid)
            else { return nil }
            // Queued even while disconnected: a SUB for it may still be in the queue.
            return state.outbound.append(control: line)
        }
        if appended == .first { scheduleWrite() }
    }

    /// Sends `PING` and waits for its `PONG`: afterwards the server has processed everything
    /// sent before, `SUB`s included.
    ///
    /// - Throws: `NATSRequestError`: `notConnected` when the connection is not up (or is
    ///   lost before the answer), `timedOut`, `shutDown`, `tooManyPending`.
    public func flush(timeoutNanos: UInt64 = 2_000_000_000) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            flush(timeoutNanos: timeoutNanos) { continuation.resume(with: $0) }
        }
    }

    func flush(timeoutNanos: UInt64, completion: @escaping PendingCompletions<Void>.Completion) {
        let outcome: Result<(UInt64, OutboundQueue.Appended), NATSRequestError> = shared.withLockedValue { state in
            guard !state.isShutDown else { return .failure(.shutDown) }
            guard state.isConnected else { return .failure(.notConnected) }
            guard let id = state.flushes.insert(completion) else { return .failure(.tooManyPending) }
            return .success((id, state.outbound.appendPing(.flush(id), line: NATSEncoder.ping)))
        }
        switch outcome {
        case .failure(let error):
            completion(.failure(error))
        case .success(let (id, appended)):
            let cancel = scheduleTimeout(timeoutNanos) { self.completeFlush(id, .failure(NATSRequestError.timedOut)) }
            if !shared.withLockedValue({ $0.flushes.attach(cancelTimeout: cancel, to: id) }) { cancel() }
            if appended == .first { scheduleWrite() }
        }
    }

    func completeFlush(_ id: UInt64, _ result: Result<Void, any Error>) {
        shared.withLockedValue { $0.flushes.remove(id) }?.complete(result)
    }

    /// Runs `fire` on the loop after `nanos`. - Returns: the cancel of it.
    func scheduleTimeout(_ nanos: UInt64, _ fire: @escaping @Sendable () -> Void) -> @Sendable () -> Void {
        let task = loop.scheduleTask(in: .nanoseconds(Int64(clamping: nanos)), fire)
        return { task.cancel() }
    }

    /// The queue went from empty to non-empty: one task writes it on the next loop pass.
    func scheduleWrite() {
        loop.execute { self.writeQueued() }
    }

    /// Writes the whole queue in one flush, if the connection is up and the socket writable.
    /// Otherwise the queue holds on: coming up, or becoming writable, calls this again.
    func writeQueued() {
        guard let channel = loopState.value.channel, channel.isWritable else { return }
        guard let bytes = shared.withLockedValue({ $0.isConnected ? $0.outbound.take() : nil }) else { return }
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
    }
}
