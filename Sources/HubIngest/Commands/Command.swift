/// A command's state (contract section 3).
public enum CommandStatus: String, Sendable, CaseIterable {
    case queued, sent, delivered, succeeded, failed, expired
    case timedOut = "timed_out"
    case cancelled

    /// No further change happens from here.
    public var isFinal: Bool {
        switch self {
        case .queued, .sent, .delivered: false
        default: true
        }
    }
}

/// A command to one device, as stored.
public struct Command: Sendable, Equatable {
    public var id: String
    public var device: String
    public var name: String
    /// The params object, as JSON text.
    public var paramsJSON: String
    public var status: CommandStatus
    /// The device's result, as JSON text, once it reported one.
    public var resultJSON: String?
    public var error: String?
    public var createdMicros: Int64
    public var updatedMicros: Int64
    public var expiresMicros: Int64

    public init(
        id: String, device: String, name: String, paramsJSON: String, status: CommandStatus, resultJSON: String?,
        error: String?, createdMicros: Int64, updatedMicros: Int64, expiresMicros: Int64
    ) {
        self.id = id
        self.device = device
        self.name = name
        self.paramsJSON = paramsJSON
        self.status = status
        self.resultJSON = resultJSON
        self.error = error
        self.createdMicros = createdMicros
        self.updatedMicros = updatedMicros
        self.expiresMicros = expiresMicros
    }
}

extension Command {
    /// No further change happens from here.
    public var isFinal: Bool { status.isFinal }
}

public enum CommandStoreError: Error, Equatable {
    /// The device has as many pending commands as it may have.
    case tooManyPending
    /// A final state was saved over one already stored (in a cluster, another node settled
    /// the command first): nothing changed, and this is the state that stands.
    case alreadyFinal(Command)
}

/// Stored commands; the storage layer implements it. The hub keeps the commands that are
/// not final in memory and stores every change as the whole row, so the last save of a
/// command is its state.
public protocol CommandStore: Sendable {
    /// Stores the command as it is now, in the next batch, and calls `done` once that batch
    /// is committed. A new command (`isNew`) fails with its batch, and `done` gets the error;
    /// a change to a stored one is retried until the database takes it. A stored final
    /// state is never overwritten: a final state saved over one gets `alreadyFinal` with
    /// the stored one.
    func save(_ command: Command, isNew: Bool, done: (@Sendable (Error?) -> Void)?)
    func command(id: String) async throws -> Command?
    /// A device's commands, newest first.
    func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command]
    /// Every command that is not final, oldest first, for the hub's memory at start.
    func unfinished() async throws -> [Command]
}

extension CommandStore {
    /// Saves and waits for the commit.
    public func save(_ command: Command, isNew: Bool) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            save(command, isNew: isNew) { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
        }
    }
}
