import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One blocking libpq connection.
///
/// Every call blocks the calling thread, so a connection lives on a dedicated thread and is
/// never touched from an event loop. It is not thread-safe: use it from one thread at a time.
public final class PostgresConnection {
    private var handle: OpaquePointer?

    /// Connects with a `postgres://` URL or a `key=value` connection string.
    public init(url: String) throws(PostgresError) {
        handle = PQconnectdb(url)
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            let message = handle.map(Self.connectionMessage) ?? "out of memory"
            PQfinish(handle)
            self.handle = nil
            throw PostgresError(.connection, message: message)
        }
        // Notices (e.g. "relation already exists, skipping") are not errors; keep them quiet.
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
        // No JIT: the hub's statements are short, and compiling one (about 90 ms, measured on
        // a 30-day history query) costs far more than it saves.
        try execute("SET jit = off")
    }

    deinit { PQfinish(handle) }

    /// Whether the connection is still usable.
    public var isConnected: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// Whether an idle connection (one that does not LISTEN) can still be used: it is
    /// connected, and the server has sent it nothing since its last statement. A server
    /// that restarts sends its idle clients a termination message and closes their sockets;
    /// libpq learns of it only when it next reads, so the first statement on such a
    /// connection would fail. This looks without blocking: a socket with anything to read
    /// while idle is taken as closed, and the caller connects afresh.
    public var isUsable: Bool {
        guard let handle, PQstatus(handle) == CONNECTION_OK else { return false }
        var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    /// Re-establishes a lost connection with the same parameters.
    public func reset() throws(PostgresError) {
        guard let handle else { throw PostgresError(.connection, message: "connection closed") }
        PQreset(handle)
        guard PQstatus(handle) == CONNECTION_OK else {
            throw PostgresError(.connection, message: Self.connectionMessage(handle))
        }
        try execute("SET jit = off")
    }

    /// Runs one statement with text parameters (`$1`, `$2`, …); `nil` is SQL NULL.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> PostgresResult {
        try finish(try run(sql, parameters), expecting: [PGRES_COMMAND_OK, PGRES_TUPLES_OK])
    }

    /// Runs a statement and makes a value of each row straight from libpq's buffer, with
    /// no string made for a number: for results of thousands of rows.
    public func query<T>(_ sql: String, _ parameters: [String?] = [], rows transform: (PostgresRow) -> T) throws(PostgresError) -> [T] {
        try finish(try run(sql, parameters), expecting: [PGRES_TUPLES_OK]) { result in
            (0..<PQntuples(result)).map { transform(PostgresRow(result: result, row: $0)) }
        }
    }

    /// Sends a statement with text parameters and waits for its result.
    private func run(_ sql: String, _ parameters: [String?]) throws(PostgresError) -> OpaquePointer? {
        let handle = try liveHandle()
        return withCStrings(parameters) { values in
            PQexecParams(handle, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
    }

    /// Runs one or more statements without parameters (schema scripts, `BEGIN`, `COMMIT`).
    public func execute(_ sql: String) throws(PostgresError) {
        let handle = try liveHandle()
        _ = try finish(PQexec(handle, sql), expecting: [PGRES_COMMAND_OK, PGRES_TUPLES_OK])
    }

    /// Runs `body` inside `BEGIN … COMMIT`, rolling back if it throws.
    public func transaction<T>(_ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            if isConnected { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Streams `data` into `COPY … FROM STDIN` and returns the number of rows copied.
    @discardableResult
    public func copyIn(_ sql: String, data: [UInt8]) throws(PostgresError) -> Int {
        let handle = try liveHandle()
        _ = try finish(PQexec(handle, sql), expecting: [PGRES_COPY_IN])
        let chunk = 1 << 20
        var offset = 0
        var failure: String?
        data.withUnsafeBufferPointer { buffer in
            while offset < buffer.count {
                let length = min(chunk, buffer.count - offset)
                let sent = buffer.baseAddress!.advanced(by: offset).withMemoryRebound(to: CChar.self, capacity: length) {
                    PQputCopyData(handle, $0, Int32(length))
                }
                guard sent == 1 else {
                    failure = Self.connectionMessage(handle)
                    return
                }
                offset += length
            }
        }
        if let failure {
            // Leave COPY state; the server reports the real reason in the result below.
            PQputCopyEnd(handle, "client failed to send data")
            _ = try? finish(PQgetResult(handle), expecting: [PGRES_COMMAND_OK])
            drainResults(handle)
            throw PostgresError(.copy, message: failure)
        }
        guard PQputCopyEnd(handle, nil) == 1 else {
            throw PostgresError(.copy, message: Self.connectionMessage(handle))
        }
        let result = try finish(PQgetResult(handle), expecting: [PGRES_COMMAND_OK])
        drainResults(handle)
        return result.affectedRows
    }

    /// Subscribes to `NOTIFY` on a channel.
    public func listen(_ channel: String) throws(PostgresError) {
        try execute("LISTEN \(quoteIdentifier(channel))")
    }

    /// Waits up to `timeoutMilliseconds` for notifications and returns their payloads.
    public func notifications(timeoutMilliseconds: Int32) throws(PostgresError) -> [(channel: String, payload: String)] {
        let handle = try liveHandle()
        var received = takeNotifications(handle)
        guard received.isEmpty else { return received }
        var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, timeoutMilliseconds) >= 0 else { return [] }
        guard PQconsumeInput(handle) == 1 else {
            throw PostgresError(.connection, message: Self.connectionMessage(handle))
        }
        received = takeNotifications(handle)
        return received
    }

    /// Quotes an SQL identifier.
    public func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingAll("\"", with: "\"\"") + "\""
    }

    /// Closes the connection; later calls fail with a connection error.
    public func close() {
        PQfinish(handle)
        handle = nil
    }

    // MARK: - Private

    private func liveHandle() throws(PostgresError) -> OpaquePointer {
        guard let handle else { throw PostgresError(.connection, message: "connection closed") }
        return handle
    }

    private func finish(_ result: OpaquePointer?, expecting statuses: [ExecStatusType]) throws(PostgresError) -> PostgresResult {
        try finish(result, expecting: statuses, read: PostgresResult.init)
    }

    /// Checks a result's status, reads it with `read` and frees it.
    private func finish<T>(
        _ result: OpaquePointer?, expecting statuses: [ExecStatusType], read: (OpaquePointer) -> T
    ) throws(PostgresError) -> T {
        guard let result else {
            throw PostgresError(.connection, message: handle.map(Self.connectionMessage) ?? "connection closed")
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard statuses.contains(status) else {
            if status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR {
                let sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
                let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
                let lost = handle.map { PQstatus($0) != CONNECTION_OK } ?? true
                throw PostgresError(
                    lost && sqlState == nil ? .connection : .query, sqlState: sqlState,
                    message: primary ?? handle.map(Self.connectionMessage) ?? "unknown error")
            }
            throw PostgresError(.query, message: "unexpected result status \(String(cString: PQresStatus(status)))")
        }
        return read(result)
    }

    private func drainResults(_ handle: OpaquePointer) {
        while let extra = PQgetResult(handle) { PQclear(extra) }
    }

    private func takeNotifications(_ handle: OpaquePointer) -> [(channel: String, payload: String)] {
        var received: [(channel: String, payload: String)] = []
        while let notify = PQnotifies(handle) {
            received.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return received
    }

    private static func connectionMessage(_ handle: OpaquePointer) -> String {
        let text = String(cString: PQerrorMessage(handle))
        // libpq's messages can span lines; keep the first meaningful one.
        return text.split(separator: "\n").first.map(String.init) ?? "connection failed"
    }
}

private func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { pointers.forEach { free($0) } }
    return body(pointers.map { $0.map { UnsafePointer($0) } })
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}
