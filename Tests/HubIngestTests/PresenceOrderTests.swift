import HubIngest
import Testing

@Suite("Presence order: each device's presence events delivered in session order")
struct PresenceOrderTests {
    typealias Event = (key: Int32, session: Int64, online: Bool)

    /// Feeds the events in order, and says which were admitted.
    func admit(_ order: inout PresenceOrder, _ events: [Event]) -> [Bool] {
        events.map { order.admit(key: $0.key, session: $0.session, online: $0.online) }
    }

    @Test("online, then offline of the same session, then online of the next session are all admitted")
    func sessionInOrder() {
        var order = PresenceOrder()
        #expect(admit(&order, [(1, 5, true)]) == [true])
        #expect(order.isOnline(key: 1) == true)
        #expect(admit(&order, [(1, 5, false)]) == [true])
        #expect(order.isOnline(key: 1) == false)
        #expect(admit(&order, [(1, 6, true)]) == [true])
        #expect(order.isOnline(key: 1) == true)
    }

    @Test("an offline of a session that arrives after the next session's online is dropped")
    func staleOfflineDropped() {
        var order = PresenceOrder()
        #expect(admit(&order, [(1, 5, true), (1, 6, true), (1, 5, false)]) == [true, true, false])
        #expect(order.isOnline(key: 1) == true)
        // The new session's own offline still comes through.
        #expect(admit(&order, [(1, 6, false)]) == [true])
        #expect(order.isOnline(key: 1) == false)
    }

    @Test("a second online, or a second offline, of the same session is dropped")
    func duplicatesDropped() {
        var order = PresenceOrder()
        #expect(admit(&order, [(1, 5, true), (1, 5, true)]) == [true, false])
        #expect(order.isOnline(key: 1) == true)
        #expect(admit(&order, [(1, 5, false), (1, 5, false)]) == [true, false])
        // Nor does a session come back online after its own offline.
        #expect(admit(&order, [(1, 5, true)]) == [false])
        #expect(order.isOnline(key: 1) == false)
    }

    @Test("any event of an older session is dropped")
    func olderSessionDropped() {
        var order = PresenceOrder()
        #expect(admit(&order, [(1, 9, false), (1, 8, true), (1, 8, false), (1, Int64.min, true)]) == [true, false, false, false])
        #expect(order.isOnline(key: 1) == false)
        #expect(admit(&order, [(1, 10, true)]) == [true])
        #expect(order.isOnline(key: 1) == true)
    }

    @Test("devices are ordered independently of each other")
    func keysIndependent() {
        var order = PresenceOrder()
        #expect(admit(&order, [(1, 100, true), (2, 1, true), (2, 1, false), (-1, 1, true), (1, 1, true)]) == [true, true, true, true, false])
        #expect(order.isOnline(key: 1) == true)
        #expect(order.isOnline(key: 2) == false)
        #expect(order.isOnline(key: -1) == true)
    }

    @Test("isOnline is nil for a device never seen, and onlineKeys lists the devices whose latest event is online")
    func onlineKeys() {
        var order = PresenceOrder()
        #expect(order.isOnline(key: 1) == nil)
        #expect(order.onlineKeys.isEmpty)
        _ = admit(&order, [(1, 1, true), (2, 1, true), (3, 1, false)])
        #expect(order.onlineKeys == [1, 2])
        // The last is stale and changes nothing.
        #expect(admit(&order, [(2, 1, false), (3, 2, true), (1, 0, false)]) == [true, true, false])
        #expect(order.onlineKeys == [1, 3])
        #expect(order.isOnline(key: 4) == nil)
    }
}
