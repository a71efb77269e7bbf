import Foundation
import HubIngest
import NIOConcurrencyHelpers

/// A command store in memory: every save commits at once, and, as in PostgreSQL, a
/// stored final state is never overwritten.
public final class MemoryStore: CommandStore {
    private let rows = NIOLockedValueBox<[String: Command]>([:])

    public init() {}

    public func save(_ command: Command, isNew: Bool, done: (@Sendable (Error?) -> Void)?) {
        let standing: Command? = rows.withLockedValue { rows in
            if let stored = rows[command.id], stored.isFinal { return stored }
            rows[command.id] = command
            return nil
        }
        done?(standing.flatMap { command.isFinal ? CommandStoreError.alreadyFinal($0) : nil })
    }

    public func command(id: String) async throws -> Command? { rows.withLockedValue { $0[id] } }
    public func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command] {
        rows.withLockedValue { Array($0.values.filter { $0.device == device && (status == nil || $0.status == status) }.prefix(limit)) }
    }
    public func unfinished() async throws -> [Command] { rows.withLockedValue { $0.values.filter { !$0.isFinal } } }
}

/// An ingest sink in memory: every write commits at once; it keeps the seqs it stored.
public final class MemorySink: IngestSink, TelemetryHistory, @unchecked Sendable {
    private let stored = NIOLockedValueBox<[UInt64]>([])

    public init() {}

    public var seqs: [UInt64] { stored.withLockedValue { $0 } }

    public func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence> {
        stored.withLockedValue { seqs in
            for burst in bursts { seqs += burst.frames.map(\.frame.seq) }
        }
        return []
    }

    public func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64] { [:] }

    public func page(deviceKey: Int32, afterSeq: UInt64, sinceMicros: Int64?, metrics: Set<String>?) async throws -> [StoredReading] { [] }
}
