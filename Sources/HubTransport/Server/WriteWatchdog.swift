import HubIngest
import NIOCore

/// Closes a connection whose peer stopped reading: one that has taken no byte for
/// `timeout` while more than the high water mark (64 KiB) waited for it, or whose unsent
/// bytes pass `maxBufferedBytes`.
/// It sits at the front of every connection's pipeline. It is inbound only, so writes and
/// flushes pass it by: it wakes when the channel turns unwritable, then looks at the unsent
/// bytes once a second until the channel is writable again. Before it closes it fires
/// `WriteWatchdog.Expired` down the pipeline, so a WebSocket handler can write its close
/// frame (4008 for dashboards, 1008 for devices) first.
///
/// Memory bound: what one connection holds in NIO's outbound buffer is at most
/// `maxBufferedBytes` plus what its handler writes in one second while the channel is not
/// writable; every handler holds back while it is not (see docs/operations.md).
final class WriteWatchdog: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

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
    private let clock: any HubClock
    /// When the peer last took bytes, or the wait began (monotonic nanoseconds).
    private var lastProgress: UInt64
    private var expired = false

    init(timeout: TimeAmount, maxBufferedBytes: Int, clock: any HubClock) {
        self.timeout = timeout
        self.clock = clock
        lastProgress = clock.uptimeNanos()
        self.maxBufferedBytes = maxBufferedBytes
    }

    /// The clock runs while the channel is not writable; it stands down once the peer has
    /// taken enough for it to be writable again.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            lastProgress = clock.uptimeNanos()  // the peer took bytes
        } else if !expired {
            let buffered = Self.buffered(context)
            if buffered > maxBufferedBytes {
                expire(.queueFull, context: context)
            } else if check == nil {
                lastBuffered = buffered
                lastProgress = clock.uptimeNanos()
                scheduleCheck(context: context)
            }
        }
        context.fireChannelWritabilityChanged()
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
            guard context.channel.isActive, !expired, !context.channel.isWritable else { return }
            let buffered = Self.buffered(context)
            if buffered > maxBufferedBytes { return expire(.queueFull, context: context) }
            if buffered < lastBuffered { lastProgress = clock.uptimeNanos() }
            lastBuffered = buffered
            if clock.uptimeNanos() &- lastProgress >= UInt64(timeout.nanoseconds) {
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
