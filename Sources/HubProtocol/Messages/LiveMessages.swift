/// The text messages the hub sends a dashboard on `/live` (contract section 4); what a
/// dashboard sends is in `DashboardMessages.swift`.

/// The first message on `/live`.
public struct Hello: HubMessage {
    public static let type = "hello"
    public var connection: String
    public var serverTimeMicros: Int64

    public init(connection: String, serverTimeMicros: Int64) {
        self.connection = connection
        self.serverTimeMicros = serverTimeMicros
    }

    private enum CodingKeys: String, CodingKey {
        case connection
        case serverTimeMicros = "server_time_us"
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"hello","connection":"#)
        writer.string(connection)
        writer.raw(#","server_time_us":"#)
        writer.integer(serverTimeMicros)
        writer.raw("}")
    }
}

/// A subscription is active; a replay, if asked for, follows.
public struct Subscribed: HubMessage {
    public static let type = "subscribed"
    public var id: String

    public init(id: String) {
        self.id = id
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"subscribed","id":"#)
        writer.string(id)
        writer.raw("}")
    }
}

/// The answer to `ping`.
public struct Pong: HubMessage {
    public static let type = "pong"

    public init() {}

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"pong"}"#)
    }
}

/// This dashboard was too slow: `dropped` events were conflated away.
public struct Lagged: HubMessage {
    public static let type = "lagged"
    public var sub: String
    public var dropped: Int

    public init(sub: String, dropped: Int) {
        self.sub = sub
        self.dropped = dropped
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"lagged","sub":"#)
        writer.string(sub)
        writer.raw(#","dropped":"#)
        writer.integer(dropped)
        writer.raw("}")
    }
}

/// A matching device connected or disconnected.
public struct Presence: HubMessage {
    public static let type = "presence"
    public var device: String
    public var online: Bool
    public var session: Int64
    public var connection: String
    public var remote: String
    public var atMicros: Int64

    public init(device: String, online: Bool, session: Int64, connection: String, remote: String, atMicros: Int64) {
        self.device = device
        self.online = online
        self.session = session
        self.connection = connection
        self.remote = remote
        self.atMicros = atMicros
    }

    private enum CodingKeys: String, CodingKey {
        case device, online, session, connection, remote
        case atMicros = "at_us"
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"presence","device":"#)
        writer.string(device)
        writer.raw(#","online":"#)
        writer.bool(online)
        writer.raw(#","session":"#)
        writer.integer(session)
        writer.raw(#","connection":"#)
        writer.string(connection)
        writer.raw(#","remote":"#)
        writer.string(remote)
        writer.raw(#","at_us":"#)
        writer.integer(atMicros)
        writer.raw("}")
    }
}

/// A history replay finished; live events follow.
public struct ReplayDone: HubMessage {
    public static let type = "replay_done"
    public var sub: String

    public init(sub: String) {
        self.sub = sub
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"replay_done","sub":"#)
        writer.string(sub)
        writer.raw("}")
    }
}

/// A command changed state. `result` is the stored JSON; absent fields are left out.
public struct CommandStatusMessage: HubMessage {
    public static let type = "command_status"
    public var id: String
    public var device: String
    public var status: String
    public var ref: String?
    public var result: RawJSON?
    public var error: String?

    public init(id: String, device: String, status: String, ref: String? = nil, result: RawJSON? = nil, error: String? = nil) {
        self.id = id
        self.device = device
        self.status = status
        self.ref = ref
        self.result = result
        self.error = error
    }

    public func write(to writer: inout JSONWriter) {
        writer.raw(#"{"type":"command_status","id":"#)
        writer.string(id)
        writer.raw(#","device":"#)
        writer.string(device)
        writer.raw(#","status":"#)
        writer.string(status)
        if let ref {
            writer.raw(#","ref":"#)
            writer.string(ref)
        }
        if let result {
            writer.raw(#","result":"#)
            writer.raw(result.text)
        }
        if let error {
            writer.raw(#","error":"#)
            writer.string(error)
        }
        writer.raw("}")
    }
}

/// One frame's readings that pass a subscription's filter. The hub writes these on its
/// hot path with `TelemetryJSON` (a body shared by every subscription with one filter);
/// this type reads them.
public struct LiveTelemetry: HubMessage {
    public struct Reading: Codable, Equatable, Sendable {
        public var metric: String
        public var tsMicros: Int64
        /// A number, a boolean or a string.
        public var value: JSONValue

        public init(metric: String, tsMicros: Int64, value: JSONValue) {
            self.metric = metric
            self.tsMicros = tsMicros
            self.value = value
        }

        private enum CodingKeys: String, CodingKey {
            case metric, value
            case tsMicros = "ts_us"
        }
    }

    public static let type = "telemetry"
    public var sub: String
    public var device: String
    public var seq: UInt64
    public var readings: [Reading]

    public init(sub: String, device: String, seq: UInt64, readings: [Reading]) {
        self.sub = sub
        self.device = device
        self.seq = seq
        self.readings = readings
    }

    public func write(to writer: inout JSONWriter) {
        TelemetryJSON.prefix(sub: sub, to: &writer)
        TelemetryJSON.body(device: device, seq: seq, readings: readings.lazy.map { ($0.metric, $0.tsMicros, $0.value) }, to: &writer)
    }
}
