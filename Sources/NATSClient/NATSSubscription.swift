/// A subscription made with `NATSConnection.subscribe`; pass it to `unsubscribe`.
///
/// `sid` is the subscription id the client chose. It is unique per connection and kept
/// across reconnects, so a subscription stays the same value for the connection's life.
public struct NATSSubscription: Hashable, Sendable {
    public let sid: String
    public let subject: String

    public init(sid: String, subject: String) {
        self.sid = sid
        self.subject = subject
    }
}
