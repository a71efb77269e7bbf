import NIOCore

/// Closes a connection whose peer stopped reading: one that has taken no byte for
/// `timeout` while the hub had bytes for it, or whose unsent bytes pass `maxBufferedBytes`.
/// It sits at the front of every connection's pipeline and sees every flush. After a flush
/// with no clock running, it reads the unsent bytes once (a peer that reads leaves none);
/// while the clock runs, a flush looks only at the channel's writability, and the clock
/// looks at the unsent bytes once a second until they are all gone. Before it closes it
/// fires `WriteWatchdog.Expired` down the pipeline, so a WebSocket handler can write its
/// close frame (4008 for dashboards, 1008 for devices) first.
///
/// Memory bound: what one connection holds in NIO's outbound buffer is at most
/// `maxBufferedBytes` plus the last flush's writes.
final class WriteWatchdog: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    /// Fired inbound just before the watchdog closes the connection.
    struct Expired: Sendable {
        let reason: Reason
    }

    enum Reason: String, Sendable {
        case stalled = "write_timeout"
        case queueFull = "outbound_queue_full"
    }

    private let timeout: TimeAmount
    private let maxBufferedBytes: Int
    private var check: Scheduled<Void>?
    /// Unsent bytes at the last check, and when they last went down.
    private var lastBuffered = 0
    private var lastProgress = NIODeadline.now()
    private var expired = false

    init(timeout: TimeAmount, maxBufferedBytes: Int) {
        self.timeout = timeout
        self.maxBufferedBytes = maxBufferedBytes
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        guard !expired else { return }
        if check == nil {
            let buffered = Self.buffered(context)
            if buffered > maxBufferedBytes {
                expire(.queueFull, context: context)
            } else if buffered > 0 {
                lastBuffered = buffered
                lastProgress = .now()
                scheduleCheck(context: context)
            }
        } else if !context.channel.isWritable, Self.buffered(context) > maxBufferedBytes {
            // Past the high water mark only: below it the cap cannot be near.
            expire(.queueFull, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
    }

    private func scheduleCheck(context: ChannelHandlerContext) {
        let interval = min(timeout, .seconds(1))
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleTask(in: interval) { [self] in
            check = nil
            let context = bound.value
            guard context.channel.isActive, !expired else { return }
            let buffered = Self.buffered(context)
            guard buffered > 0 else { return }  // everything went out: the clock stands down
            if buffered > maxBufferedBytes { return expire(.queueFull, context: context) }
            if buffered < lastBuffered { lastProgress = .now() }
            lastBuffered = buffered
            if NIODeadline.now() - lastProgress >= timeout {
                expire(.stalled, context: context)
            } else {
                scheduleCheck(context: context)
            }
        }
    }

    private func expire(_ reason: Reason, context: ChannelHandlerContext) {
        expired = true
        check?.cancel()
        check = nil
        context.fireUserInboundEventTriggered(Expired(reason: reason))
        context.close(promise: nil)
    }

    private static func buffered(_ context: ChannelHandlerContext) -> Int {
        (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }
}
