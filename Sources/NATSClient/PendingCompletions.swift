/// Completions waiting for an answer (a reply, a `PONG`), by id: each is taken out exactly
/// once, by the answer, its timeout or the shutdown, whichever comes first.
///
/// Memory bound: at most `capacity` entries; `insert` refuses more. An entry holds a closure
/// and the cancel of its timer.
struct PendingCompletions<Value: Sendable>: Sendable {
    typealias Completion = @Sendable (Result<Value, any Error>) -> Void

    struct Entry: Sendable {
        var completion: Completion
        /// Cancels the entry's timeout timer; `nil` until `attach` is called.
        var cancelTimeout: (@Sendable () -> Void)?
    }

    let capacity: Int
    private var entries: [UInt64: Entry] = [:]
    private var nextID: UInt64 = 1

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { entries.count }

    /// Adds `completion` and returns its id, or `nil` when `capacity` entries are waiting.
    mutating func insert(_ completion: @escaping Completion) -> UInt64? {
        guard entries.count < capacity else { return nil }
        let id = nextID
        nextID += 1
        entries[id] = Entry(completion: completion)
        return id
    }

    /// Gives entry `id` its timer's cancel. Returns `false` when the entry is already gone
    /// (its answer came first): the caller cancels the timer itself.
    mutating func attach(cancelTimeout: @escaping @Sendable () -> Void, to id: UInt64) -> Bool {
        guard entries[id] != nil else { return false }
        entries[id]?.cancelTimeout = cancelTimeout
        return true
    }

    /// Takes entry `id` out, or `nil` when it is already gone. Call the completion (and the
    /// cancel) after the lock is released.
    mutating func remove(_ id: UInt64) -> Entry? { entries.removeValue(forKey: id) }

    /// Takes every entry out, oldest first.
    mutating func removeAll() -> [Entry] {
        defer { entries.removeAll() }
        return entries.sorted { $0.key < $1.key }.map(\.value)
    }
}

extension PendingCompletions.Entry {
    /// Cancels the timer, then completes. Never call it with the lock held.
    func complete(_ result: Result<Value, any Error>) {
        cancelTimeout?()
        completion(result)
    }
}
