import Dispatch
import HubIngest
import HubProtocol
import NIOCore

/// Pushing events to one dashboard without ever waiting for it (see `Outbox`).
extension DashboardHandler {
    /// Events from the fan-out, on this loop.
    func deliver(_ events: [LiveEvent]) {
        guard let context, !closing else { return }
        for event in events {
            switch event {
            case .control(let text):
                emit(control: text, context: context)
            case .telemetry(let subscription, let device, let frame, let text):
                guard subscriptions[subscription.id] === subscription else { continue }
                if !replayFloors.isEmpty, isRepeatOfReplay(sub: subscription.id, device: device, seq: frame.frame.seq) { continue }
                if replays[subscription.id] != nil {
                    replays[subscription.id]!.hold(event, maxBytes: environment.maxQueuedBytes)
                } else if let interval = subscription.minIntervalNanos {
                    let now = environment.clock.uptimeNanos()
                    let readings = subscription.readings(of: frame)
                    if let ready = rate.offer(sub: subscription.id, device: device, readings: readings, intervalNanos: interval, nowNanos: now) {
                        emit(
                            telemetry: { text ?? LiveEvent.text(subscription, device: device, frame: frame) },
                            sub: subscription.id, device: device, readings: { ready }, context: context)
                    } else {
                        scheduleRateFlush(context: context)
                    }
                } else {
                    emit(
                        telemetry: { text ?? LiveEvent.text(subscription, device: device, frame: frame) },
                        sub: subscription.id, device: device, readings: { subscription.readings(of: frame) }, context: context)
                }
            }
        }
        flushOut(context)
    }

    /// Readings this loop's mailbox conflated (`LoopMailbox`): delivered as any events, then
    /// each subscription's count of missed readings as `lagged`, behind them (or into the
    /// outbox's or the replay's own count, when those hold events back).
    func deliverConflated(_ events: [LiveEvent], dropped: [(LiveSubscription, Int)]) {
        guard let context, !closing else { return }
        deliver(events)
        for (subscription, count) in dropped where subscriptions[subscription.id] === subscription {
            environment.metrics.conflated.increment(by: Int64(count))
            if replays[subscription.id] != nil {
                replays[subscription.id]!.addDropped(count)
            } else if !outbox.addDropped(sub: subscription.id, count: count) {
                environment.metrics.lagged.increment()
                emit(control: Lagged(sub: subscription.id, dropped: count).json, context: context)
            }
        }
        flushOut(context)
    }

    /// Whether a live frame was already sent by the subscription's replay (`replayFloors`).
    private func isRepeatOfReplay(sub: String, device: String, seq: UInt64) -> Bool {
        guard let floor = replayFloors[sub]?[device] else { return false }
        if seq <= floor { return true }
        replayFloors[sub]![device] = nil
        if replayFloors[sub]!.isEmpty { replayFloors[sub] = nil }
        return false
    }

    func emit(control text: String, context: ChannelHandlerContext) {
        let before = outbox.queuedBytes
        let decision = outbox.offer(
            control: text, writable: context.channel.isWritable, nowNanos: environment.clock.uptimeNanos(),
            maxBytes: environment.maxQueuedBytes, stallLimitNanos: environment.stallLimitNanos)
        account(since: before)
        perform(decision, text: text, context: context)
    }

    func emit(telemetry text: () -> String?, sub: String, device: String, readings: () -> [ConflatedReading], context: ChannelHandlerContext) {
        let before = outbox.queuedBytes
        let decision = outbox.offer(
            telemetry: text, sub: sub, device: device, readings: readings, writable: context.channel.isWritable,
            nowNanos: environment.clock.uptimeNanos(), maxBytes: telemetryBound,
            stallLimitNanos: environment.stallLimitNanos)
        account(since: before)
        if decision == .write {
            guard let text = text() else { return }
            environment.metrics.deliveries.increment()
            perform(decision, text: text, context: context)
            return
        }
        let dropped = outbox.takeNewlyDropped()
        if dropped > 0 { environment.metrics.conflated.increment(by: Int64(dropped)) }
        perform(decision, text: "", context: context)
    }

    /// The outbox's bound for telemetry now: its own, or what it holds plus what is left of
    /// the bound of all dashboards together.
    private var telemetryBound: Int {
        let left = environment.maxTotalQueuedBytes - environment.totalQueuedBytes.load(ordering: .relaxed)
        return min(environment.maxQueuedBytes, outbox.queuedBytes + max(0, left))
    }

    /// Keeps the total of all outboxes (`LiveEnvironment.totalQueuedBytes`) true.
    func account(since before: Int) {
        let change = outbox.queuedBytes - before
        if change != 0 { environment.totalQueuedBytes.add(change, ordering: .relaxed) }
    }

    private func perform(_ decision: Outbox.Decision, text: String, context: ChannelHandlerContext) {
        switch decision {
        case .write: send(text, context: context)
        case .held: break
        case .closeSlowConsumer:
            environment.metrics.slowClosed.increment()
            close(code: CloseReason.slowConsumer.code, reason: CloseReason.slowConsumer.rawValue, context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && !outbox.isIdle {
            let before = outbox.queuedBytes
            defer { account(since: before) }
            let dropped = outbox.drain(isSubscribed: { self.subscriptions[$0] != nil }, write: { self.send($0, context: context) })
            if dropped > 0 { environment.metrics.lagged.increment() }
            flushOut(context)
        }
        if context.channel.isWritable && outbox.isIdle { releaseIdleWaiters() }
        resumeReadingIfAllowed(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// Completes once nothing waits in the outbox and the socket takes writes: what is
    /// written then comes after everything queued before.
    func whenOutboxIdle(context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        if outbox.isIdle && context.channel.isWritable { return eventLoop.makeSucceededFuture(()) }
        let promise = eventLoop.makePromise(of: Void.self)
        idleWaiters.append(promise)
        return promise.futureResult
    }

    /// Lets waiting replay chunks go: the outbox emptied, or the connection is going (the
    /// replay then sees it and stops).
    func releaseIdleWaiters() {
        let waiters = idleWaiters
        idleWaiters = []
        waiters.forEach { $0.succeed(()) }
    }

    /// Sends held `max_rate_hz` readings when they fall due.
    private func scheduleRateFlush(context: ChannelHandlerContext) {
        guard let due = rate.nextDue, rate.timerDue.map({ due < $0 }) ?? true else { return }
        rateTimer?.cancel()
        rate.timerDue = due
        let delay = Int64(due &- min(due, environment.clock.uptimeNanos()))
        rateTimer = eventLoop.scheduleTask(in: .nanoseconds(delay)) { [self] in
            rate.timerDue = nil
            guard let context = self.context, !closing else { return }
            let ready = rate.takeDue(nowNanos: environment.clock.uptimeNanos())
            for message in Outbox.messages(ready, isSubscribed: { self.subscriptions[$0] != nil }) {
                emit(control: message, context: context)
            }
            flushOut(context)
            scheduleRateFlush(context: context)
        }
    }
}
