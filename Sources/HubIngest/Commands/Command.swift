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

public enum CommandStoreError: Error, Equatable {
    /// The device has as many pending commands as it may have.
    case tooManyPending
}

/// Stored commands; the storage layer implements it. Every change is one conditional
/// update, so concurrent changes cannot skip a state.
public protocol CommandStore: Sendable {
    /// Stores a new `queued` command, unless the device already has `maxPending` commands
    /// that are not final.
    func create(device: String, name: String, paramsJSON: String, ttlSeconds: Int, maxPending: Int) async throws -> Command
    func command(id: String) async throws -> Command?
    /// A device's commands, newest first.
    func commands(device: String, status: CommandStatus?, limit: Int) async throws -> [Command]
    /// Moves a command from one of `from` to `to`, for `device` if given.
    /// - Returns: the changed command, or `nil` if it was not in one of those states.
    func transition(id: String, device: String?, from: Set<CommandStatus>, to: CommandStatus, resultJSON: String?, error: String?) async throws -> Command?
    /// Commands a device should get on connect: queued, or sent without a result, oldest first.
    func pending(device: String) async throws -> [Command]
    /// Every command that is not final, for the expiry timer at start.
    func unfinished() async throws -> [Command]
}
