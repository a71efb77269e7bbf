import Foundation
import HubIngest
import HubProtocol

/// Commands as JSON: the REST object and the `/live` status message.
enum CommandJSON {
    /// The object `GET /api/v1/commands/{id}` returns, as JSON text. Built by hand: params
    /// and result are stored JSON texts already.
    static func object(_ command: Command) -> String {
        #"{"id":\#(JSON.quote(command.id)),"device":\#(JSON.quote(command.device)),"name":\#(JSON.quote(command.name)),"#
            + #""params":\#(command.paramsJSON),"status":"\#(command.status.rawValue)","result":\#(command.resultJSON ?? "null"),"#
            + #""error":\#(command.error.map(JSON.quote) ?? "null"),"created_us":\#(command.createdMicros),"#
            + #""updated_us":\#(command.updatedMicros),"expires_at_us":\#(command.expiresMicros)}"#
    }

    /// `{"type":"command_status",…}` for dashboards.
    static func status(_ command: Command, ref: String?) -> String {
        CommandStatusMessage(
            id: command.id, device: command.device, status: command.status.rawValue, ref: ref, result: command.resultJSON.map(RawJSON.init),
            error: command.error
        ).json
    }
}
