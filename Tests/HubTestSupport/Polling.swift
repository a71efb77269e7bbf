import Testing

/// Polls `condition` (real time) until it holds; fails after 5 s.
public func until(_ what: String, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<5_000 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("timed out waiting until \(what)")
}
