/// `max_rate_hz`: at most one event per (subscription, device, metric) per interval, the
/// newest kept. A frame goes out whole when all its metrics are due, or is held whole, so
/// a subscription never sees the same (device, seq) twice.
struct RateLimiter {
    private var lastSent: [Outbox.Key: UInt64] = [:]
    private var held: [Outbox.Key: (reading: ConflatedReading, intervalNanos: UInt64)] = [:]
    var timerDue: UInt64?

    /// - Returns: the readings to send now, or `nil` if they are held for later.
    mutating func offer(sub: String, device: String, readings: [ConflatedReading], intervalNanos: UInt64, nowNanos: UInt64) -> [ConflatedReading]? {
        let keys = readings.map { Outbox.Key(sub: sub, device: device, metric: $0.metric) }
        let due = keys.allSatisfy { key in lastSent[key].map { nowNanos &- $0 >= intervalNanos } ?? true }
        if due {
            for key in keys {
                lastSent[key] = nowNanos
                held[key] = nil  // superseded by this newer reading
            }
            return readings
        }
        for (key, reading) in zip(keys, readings) { held[key] = (reading, intervalNanos) }
        return nil
    }

    /// The held readings whose interval has passed, now marked sent.
    mutating func takeDue(nowNanos: UInt64) -> [Outbox.Key: ConflatedReading] {
        var due: [Outbox.Key: ConflatedReading] = [:]
        for (key, entry) in held where lastSent[key].map({ nowNanos &- $0 >= entry.intervalNanos }) ?? true {
            due[key] = entry.reading
        }
        for key in due.keys {
            held[key] = nil
            lastSent[key] = nowNanos
        }
        return due
    }

    /// When the next held reading falls due, if any.
    var nextDue: UInt64? {
        held.map { (lastSent[$0.key] ?? 0) &+ $0.value.intervalNanos }.min()
    }

    /// Forgets a subscription's state.
    mutating func remove(sub: String) {
        lastSent = lastSent.filter { $0.key.sub != sub }
        held = held.filter { $0.key.sub != sub }
    }
}
