/// The latest presence of every device, cluster-wide, in session order: events arrive
/// from several nodes, and an event older than what was already delivered is dropped. A
/// session's offline event after its own online event is new; anything of an older
/// session, or a second online of the same one, is stale.
///
/// Keyed by the device's storage key, so a purged and re-created id starts afresh. Memory:
/// one entry per device that connected since start (bounded by `--max-devices`).
public struct PresenceOrder: Sendable {
    private var latest: [Int32: (session: Int64, online: Bool)] = [:]

    public init() {}

    /// Whether to deliver this event; if so, it becomes the device's latest.
    public mutating func admit(key: Int32, session: Int64, online: Bool) -> Bool {
        if let known = latest[key] {
            let newer = session > known.session || (session == known.session && known.online && !online)
            guard newer else { return false }
        }
        latest[key] = (session, online)
        return true
    }

    /// The session of the device's latest event; `nil` if no event was seen.
    public func session(key: Int32) -> Int64? {
        latest[key]?.session
    }

    /// Whether the device's latest event says online; `nil` if no event was seen.
    public func isOnline(key: Int32) -> Bool? {
        latest[key]?.online
    }

    /// The devices whose latest event says online.
    public var onlineKeys: Set<Int32> {
        Set(latest.lazy.filter { $0.value.online }.map(\.key))
    }
}
