import HubIngest
import HubProtocol
import Postgres

/// Commits ingest batches to PostgreSQL: one transaction per batch holding a binary COPY
/// of the readings, a COPY of rejected frames, and the devices' new marks and sessions.
///
/// Used only by the writer thread. It reconnects on its own after a lost connection.
public final class PostgresIngestSink: IngestSink {
    private let url: String
    private var connection: PostgresConnection?
    /// Metric name → key. Grows with the number of distinct metric names.
    private var metricKeys: [String: Int32] = [:]
    /// (device key, metric key) pairs known to be in `device_metric`.
    private var storedPairs: Set<Int64> = []

    /// Whether writes are fenced by session (cluster mode): a burst commits only while its
    /// connection's session owns the device (see `DeviceFence`).
    private let fencing: Bool

    public init(url: String, fencing: Bool = false) {
        self.url = url
        self.fencing = fencing
    }

    /// What one transaction writes, encoded before it begins so the transaction stays short.
    private struct Encoded {
        var readings: [UInt8] = [], readingRows = 0
        var rollups: [UInt8] = [], rollupRows = 0
        var rejections: [UInt8] = [], rejectionRows = 0
        var newPairs: Set<Int64> = []
        var markKeys: [String] = [], markSeqs: [String] = []
        var sessionKeys: [String] = [], sessions: [String] = [], remotes: [String] = [], times: [String] = []
    }

    public func write(_ bursts: [IngestBurst]) throws -> Set<DeviceFence> {
        let connection = try liveConnection()
        do {
            try ensureMetricKeys(for: bursts, on: connection)
            var encoded = encode(bursts)
            let fenced = try connection.transaction { () throws(PostgresError) -> Set<DeviceFence> in
                var fenced: Set<DeviceFence> = []
                if fencing {
                    // First, so the devices' rows are locked for the rest of the transaction:
                    // a claim by another node waits for this commit, or fences it.
                    fenced = try fence(bursts, on: connection)
                    if !fenced.isEmpty { encoded = encode(bursts.filter { !fenced.contains($0.fence) }) }
                }
                if encoded.readingRows > 0 {
                    try connection.copyIn(
                        "COPY reading (device_key, metric_key, seq, ts, value_type, value, text_value) FROM STDIN (FORMAT binary)",
                        data: encoded.readings)
                }
                if encoded.rollupRows > 0 { try connection.copyIn(RollupDeltas.copyStatement, data: encoded.rollups) }
                if !encoded.newPairs.isEmpty {
                    try connection.query(
                        "INSERT INTO device_metric SELECT * FROM unnest($1::int[], $2::int[]) ON CONFLICT DO NOTHING",
                        [arrayLiteral(encoded.newPairs.map { String($0 >> 32) }),
                         arrayLiteral(encoded.newPairs.map { String(Int32(truncatingIfNeeded: $0)) })])
                }
                if encoded.rejectionRows > 0 {
                    try connection.copyIn(
                        "COPY rejected_frames (device_id, seq, reason, payload, received_at) FROM STDIN (FORMAT binary)",
                        data: encoded.rejections)
                }
                if !fencing, !encoded.markKeys.isEmpty {
                    try connection.query(
                        """
                        UPDATE device_registry d SET last_seq = v.seq, last_seen = now()
                        FROM (SELECT key, max(seq) AS seq FROM unnest($1::int[], $2::bigint[]) AS u(key, seq) GROUP BY key) v
                        WHERE d.key = v.key AND d.last_seq < v.seq
                        """, [arrayLiteral(encoded.markKeys), arrayLiteral(encoded.markSeqs)])
                }
                if !encoded.sessionKeys.isEmpty {
                    try connection.query(
                        """
                        UPDATE device_registry d SET session = GREATEST(d.session, v.session), remote = v.remote,
                            last_seen = GREATEST(d.last_seen, 'epoch'::timestamptz + v.at * interval '1 microsecond')
                        FROM unnest($1::int[], $2::bigint[], $3::text[], $4::bigint[]) AS v(key, session, remote, at)
                        WHERE d.key = v.key
                        """, [arrayLiteral(encoded.sessionKeys), arrayLiteral(encoded.sessions), arrayLiteral(encoded.remotes),
                              arrayLiteral(encoded.times)])
                }
                return fenced
            }
            storedPairs.formUnion(encoded.newPairs)
            return fenced
        } catch {
            if !connection.isConnected { self.connection = nil }
            // A refusal of the batch's content is told apart, so the writer can isolate it.
            if case .refused = StorageFailure(error) { throw StorageFailure(error) }
            throw error
        }
    }

    /// Raises the marks of the bursts whose session still owns the device, and locks those
    /// rows. - Returns: the fences of the others (claimed since by a newer session).
    private func fence(_ bursts: [IngestBurst], on connection: PostgresConnection) throws(PostgresError) -> Set<DeviceFence> {
        var wanted: Set<DeviceFence> = []
        var keys: [String] = [], sessions: [String] = [], seqs: [String] = []
        for burst in bursts where burst.stores {
            wanted.insert(burst.fence)
            keys.append(String(burst.device.key))
            sessions.append(String(burst.session))
            seqs.append(burst.highestSeq.map { String($0) } ?? "NULL")
        }
        guard !wanted.isEmpty else { return [] }
        let owned = try connection.query(
            """
            UPDATE device_registry d SET last_seq = GREATEST(d.last_seq, v.seq), last_seen = now()
            FROM (SELECT key, session, max(seq) AS seq FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS u(key, session, seq)
                  GROUP BY key, session) v
            WHERE d.key = v.key AND d.session = v.session
            RETURNING d.key, v.session
            """, [arrayLiteral(keys), arrayLiteral(sessions), arrayLiteral(seqs)]
        ) { row in DeviceFence(key: Int32(row.int64(0) ?? 0), session: row.int64(1) ?? 0) }
        return wanted.subtracting(owned)
    }

    private func encode(_ bursts: [IngestBurst]) -> Encoded {
        var encoded = Encoded()
        let deltas: RollupDeltas
        (encoded.readings, encoded.readingRows, deltas) = encodeReadings(bursts)
        for key in deltas.entries.keys where !storedPairs.contains(Self.pair(key.device, key.metric)) {
            encoded.newPairs.insert(Self.pair(key.device, key.metric))
        }
        (encoded.rollups, encoded.rollupRows) = deltas.encoded()
        (encoded.rejections, encoded.rejectionRows) = encodeRejections(bursts)
        for burst in bursts {
            if let seq = burst.highestSeq {
                encoded.markKeys.append(String(burst.device.key))
                encoded.markSeqs.append(String(seq))
            }
            if let start = burst.start {
                encoded.sessionKeys.append(String(burst.device.key))
                encoded.sessions.append(String(start.session))
                encoded.remotes.append(arrayElement(start.remote))
                encoded.times.append(String(start.atMicros))
            }
        }
        return encoded
    }

    private static func pair(_ device: Int32, _ metric: Int32) -> Int64 {
        Int64(device) << 32 | Int64(UInt32(bitPattern: metric))
    }

    public func committedMarks(deviceKeys: [Int32]) throws -> [Int32: UInt64] {
        let connection = try liveConnection()
        let result = try connection.query(
            "SELECT key, last_seq FROM device_registry WHERE key = ANY($1::int[])",
            [arrayLiteral(deviceKeys.map(String.init))])
        var marks: [Int32: UInt64] = [:]
        for row in result.rows {
            if let key = row[0].flatMap({ Int32($0) }), let seq = row[1].flatMap({ UInt64($0) }) { marks[key] = seq }
        }
        return marks
    }

    private func liveConnection() throws(PostgresError) -> PostgresConnection {
        if let connection, connection.isUsable { return connection }
        self.connection = nil
        let fresh = try PostgresConnection(url: url)
        connection = fresh
        return fresh
    }

    private func ensureMetricKeys(for bursts: [IngestBurst], on connection: PostgresConnection) throws(PostgresError) {
        var missing: Set<String> = []
        for burst in bursts {
            for accepted in burst.frames {
                for reading in accepted.frame.readings where metricKeys[reading.name] == nil {
                    missing.insert(reading.name)
                }
            }
        }
        guard !missing.isEmpty else { return }
        let names = arrayLiteral(missing.map(arrayElement))
        try connection.query("INSERT INTO metric (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING", [names])
        for row in try connection.query("SELECT key, name FROM metric WHERE name = ANY($1::text[])", [names]).rows {
            metricKeys[row[1]!] = Int32(row[0]!)!
        }
    }

    /// The readings' COPY data and row count, and the batch's rollup deltas.
    private func encodeReadings(_ bursts: [IngestBurst]) -> ([UInt8], Int, RollupDeltas) {
        var encoder = BinaryCopyEncoder(reservingCapacity: 1 << 20)
        var deltas = RollupDeltas()
        for burst in bursts {
            let deviceKey = burst.device.key
            for accepted in burst.frames {
                let base = accepted.baseMicros
                let seq = Int64(accepted.frame.seq)
                for reading in accepted.frame.readings {
                    let metricKey = metricKeys[reading.name]!
                    let ts = base + Int64(reading.offsetMicros)
                    deltas.add(device: deviceKey, metric: metricKey, tsMicros: ts, seq: seq, value: reading.value)
                    encoder.beginRow(fields: 7)
                    encoder.appendInt32(deviceKey)
                    encoder.appendInt32(metricKey)
                    encoder.appendInt64(seq)
                    encoder.appendTimestamp(unixMicros: ts)
                    encoder.appendInt16(Int16(reading.value.typeCode))
                    switch reading.value {
                    case .f64(let value):
                        encoder.appendDouble(value)
                        encoder.appendNull()
                    case .i64(let value):
                        encoder.appendDouble(Double(value))
                        encoder.appendNull()
                    case .bool(let value):
                        encoder.appendDouble(value ? 1 : 0)
                        encoder.appendNull()
                    case .string(let value):
                        encoder.appendNull()
                        encoder.appendText(value)
                    }
                }
            }
        }
        return (encoder.rowCount > 0 ? encoder.finish() : [], encoder.rowCount, deltas)
    }

    private func encodeRejections(_ bursts: [IngestBurst]) -> ([UInt8], Int) {
        var encoder = BinaryCopyEncoder(reservingCapacity: 4096)
        for burst in bursts {
            for rejected in burst.rejections {
                encoder.beginRow(fields: 5)
                encoder.appendText(burst.device.id)
                if let seq = rejected.seq { encoder.appendInt64(Int64(seq)) } else { encoder.appendNull() }
                encoder.appendText(rejected.reason)
                encoder.appendBytes(rejected.payload)
                encoder.appendTimestamp(unixMicros: rejected.receivedAtMicros)
            }
        }
        return (encoder.rowCount > 0 ? encoder.finish() : [], encoder.rowCount)
    }
}

/// A PostgreSQL array literal of already-formatted elements: `{a,b,c}`.
func arrayLiteral(_ elements: [String]) -> String {
    "{" + elements.joined(separator: ",") + "}"
}

/// One text element of an array literal, quoted and escaped. Escaped by Unicode scalar,
/// not by character: a `"` followed by a combining mark is one `Character` that is not
/// equal to `"`, and would end the element.
func arrayElement(_ text: String) -> String {
    var out = "\""
    out.unicodeScalars.reserveCapacity(text.unicodeScalars.count + 2)
    for scalar in text.unicodeScalars {
        if scalar == "\"" || scalar == "\\" { out.unicodeScalars.append("\\") }
        out.unicodeScalars.append(scalar)
    }
    return out + "\""
}
