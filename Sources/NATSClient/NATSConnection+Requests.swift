import NATS

extension NATSConnection {
    /// Sends `payload` to `subject` and waits for the first reply.
    ///
    /// Replies come through one inbox subscription per connection, `_INBOX.<token>.*`, sent
    /// with every handshake; each request gets `_INBOX.<token>.<id>`.
    ///
    /// - Throws: `NATSRequestError`: `timedOut`; `noResponders` when the server says nobody
    ///   subscribes to `subject`; `notConnected` when the connection is not up when asked;
    ///   `tooManyPending` past `maxPendingRequests`; `notSent` when the publish was dropped;
    ///   `shutDown`.
    public func request(subject: String, payload: [UInt8], timeoutNanos: UInt64) async throws -> Message {
        try await withCheckedThrowingContinuation { continuation in
            request(subject: subject, payload: payload, timeoutNanos: timeoutNanos) { continuation.resume(with: $0) }
        }
    }

    /// `request` for callers that are not async (an event loop, say): `completion` is called
    /// exactly once, on any thread (the caller's when it fails at once, else the loop).
    public func request(
        subject: String, payload: [UInt8], timeoutNanos: UInt64,
        completion: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) {
        let outcome: Result<UInt64, NATSRequestError> = shared.withLockedValue { state in
            guard !state.isShutDown else { return .failure(.shutDown) }
            guard state.isConnected else { return .failure(.notConnected) }
            guard let id = state.requests.insert(completion) else { return .failure(.tooManyPending) }
            return .success(id)
        }
        let id: UInt64
        switch outcome {
        case .failure(let error):
            completion(.failure(error))
            return
        case .success(let inserted):
            id = inserted
        }
        let cancel = scheduleTimeout(timeoutNanos) { self.completeRequest(id, .failure(NATSRequestError.timedOut)) }
        if !shared.withLockedValue({ $0.requests.attach(cancelTimeout: cancel, to: id) }) { cancel() }
        if enqueuePublish(subject: subject, replyTo: inboxPrefix + String(id), payload: payload) != nil {
            completeRequest(id, .failure(NATSRequestError.notSent))
        }
    }

    /// A message on the inbox subscription: the reply to the request its subject names.
    func receivedReply(_ message: Message) {
        guard message.subject.hasPrefix(inboxPrefix),
              let id = UInt64(message.subject.dropFirst(inboxPrefix.count))
        else { return }
        completeRequest(id, message.isNoRespondersStatus ? .failure(NATSRequestError.noResponders) : .success(message))
    }

    func completeRequest(_ id: UInt64, _ result: Result<Message, any Error>) {
        shared.withLockedValue { $0.requests.remove(id) }?.complete(result)
    }
}

extension Message {
    /// Whether this is the server's "no responders" answer to a request: an `HMSG` with
    /// status 503 (`NATS/1.0 503`) and no payload.
    var isNoRespondersStatus: Bool {
        guard let headers, payload.isEmpty else { return false }
        let status = Array("NATS/1.0 503".utf8)
        guard headers.starts(with: status) else { return false }
        let next = headers.dropFirst(status.count).first
        return next == UInt8(ascii: " ") || next == UInt8(ascii: "\r")
    }
}
