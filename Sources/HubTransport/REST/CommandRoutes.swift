import Foundation
import HubIngest
import HubProtocol
import NIOHTTP1

/// `/api/v1/…/commands`: send, look up, list and cancel commands.
struct CommandRoutes: Sendable {
    /// Commands per list answer.
    static let listLimit = 1_000

    let commands: CommandCenter
    let registry: DeviceRegistry

    var routes: [RESTRouter.Route] {
        [
            .init(.POST, "/api/v1/devices/:id/commands", create),
            .init(.GET, "/api/v1/devices/:id/commands", list),
            .init(.GET, "/api/v1/commands/:command", show),
            .init(.DELETE, "/api/v1/commands/:command", cancel),
        ]
    }

    @Sendable func create(_ request: RESTRequest) async throws -> HTTPReply {
        let device = try DeviceRoutes.id(request)
        guard registry.record(id: device) != nil else { throw RESTError.notFound("no device \(device)") }
        let body = try request.jsonObject()
        let field = { (name: String) in body[name].map(JSONValue.init(foundation:)) }
        let order = try CommandOrder(name: field("name"), params: field("params"), ttl: field("ttl_s"), settings: commands.settings)
        let waitSeconds = try CommandOrder.seconds(field("wait_s"), name: "wait_s", range: 0...commands.settings.maxWaitSeconds) ?? 0
        var command: Command
        do {
            command = try await commands.create(device: device, name: order.name, paramsJSON: order.paramsJSON, ttlSeconds: order.ttlSeconds)
        } catch CommandStoreError.tooManyPending {
            throw RESTError(.tooManyRequests, "too_many_pending", "device \(device) has \(commands.settings.maxPendingPerDevice) pending commands")
        }
        if waitSeconds > 0, let settled = try await commands.wait(id: command.id, seconds: waitSeconds) { command = settled }
        return HTTPReply(status: command.isFinal && waitSeconds > 0 ? .ok : .accepted, body: CommandJSON.object(command))
    }

    @Sendable func list(_ request: RESTRequest) async throws -> HTTPReply {
        let device = try DeviceRoutes.id(request)
        guard registry.record(id: device) != nil else { throw RESTError.notFound("no device \(device)") }
        var status: CommandStatus?
        if let raw = request.query["status"] {
            guard let value = CommandStatus(rawValue: raw) else {
                throw RESTError(.badRequest, "bad_request", "status must be one of \(CommandStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            status = value
        }
        let found = try await commands.commands(device: device, status: status, limit: Self.listLimit)
        return HTTPReply(status: .ok, body: "[" + found.map(CommandJSON.object).joined(separator: ",") + "]")
    }

    @Sendable func show(_ request: RESTRequest) async throws -> HTTPReply {
        let id = request.parameters["command"] ?? ""
        guard let command = try await commands.command(id: id) else { throw RESTError.notFound("no command \(id)") }
        return HTTPReply(status: .ok, body: CommandJSON.object(command))
    }

    @Sendable func cancel(_ request: RESTRequest) async throws -> HTTPReply {
        let id = request.parameters["command"] ?? ""
        if let cancelled = try await commands.cancel(id: id) { return HTTPReply(status: .ok, body: CommandJSON.object(cancelled)) }
        guard let command = try await commands.command(id: id) else { throw RESTError.notFound("no command \(id)") }
        throw RESTError(.conflict, "not_queued", "command \(id) is \(command.status.rawValue); only a queued command can be cancelled")
    }
}

/// A command's name, params and time to live, validated from a JSON body or message.
struct CommandOrder {
    let name: String
    let paramsJSON: String
    let ttlSeconds: Int?

    /// Checks a command's fields, from a REST body or a `/live` message, as given.
    init(name: JSONValue?, params: JSONValue?, ttl: JSONValue?, settings: CommandCenter.Settings) throws(RESTError) {
        guard case .string(let name)? = name, (1...64).contains(name.utf8.count), StorableJSON.refusal(text: name) == nil else {
            throw RESTError(.badRequest, "bad_request", "\"name\" must be a string of 1 to 64 bytes without U+0000")
        }
        let params = params ?? .object([:])
        guard case .object = params else { throw RESTError(.badRequest, "bad_request", "\"params\" must be a JSON object") }
        if let why = StorableJSON.refusal(params) { throw RESTError(.badRequest, "bad_request", "\"params\": \(why)") }
        let text = params.json
        guard text.utf8.count <= settings.maxParamsBytes else {
            throw RESTError(.badRequest, "bad_request", "\"params\" may take at most \(settings.maxParamsBytes) bytes as JSON")
        }
        self.name = name
        paramsJSON = text
        ttlSeconds = try Self.seconds(ttl, name: "ttl_s", range: 1...settings.maxTTLSeconds)
    }

    /// An optional whole number of seconds within `range`; 400 naming it otherwise.
    static func seconds(_ value: JSONValue?, name: String, range: ClosedRange<Int>) throws(RESTError) -> Int? {
        guard let value else { return nil }
        guard let seconds = value.exactInteger(in: Int64(range.lowerBound)...Int64(range.upperBound)) else {
            throw RESTError(.badRequest, "bad_request", "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return Int(seconds)
    }
}
