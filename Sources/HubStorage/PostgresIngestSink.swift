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
    /// The deltas of committed batches not yet in `rollup_delta`, under this connection's
    /// writer id. Bounded by the writer, which flushes them every second or sooner.
    private var holder = HeldRollups()

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
        var deltas = RollupDeltas()
        var pending = PendingRanges()
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
                if !encoded.pending.keys.isEmpty {
                    let range = encoded.pending
                    try connection.query(
                        """
                        INSERT INTO rollup_pending SELECT $1::integer, $2::bigint, $3::integer[], $4::bigint[], $5::bigint[],
                            ARRAY(SELECT 'epoch'::timestamptz + t * interval '1 microsecond' FROM unnest($6::bigint[]) WITH ORDINALITY AS u(t, i) ORDER BY i),
                            ARRAY(SELECT 'epoch'::timestamptz + t * interval '1 microsecond' FROM unnest($7::bigint[]) WITH ORDINALITY AS u(t, i) ORDER BY i)
                        """,
                        [String(holder.writer), String(holder.nextBatch), arrayLiteral(range.keys.map(String.init)),
                         arrayLiteral(range.seqLo.map(String.init)), arrayLiteral(range.seqHi.map(String.init)),
                         arrayLiteral(range.tsLo.map(String.init)), arrayLiteral(range.tsHi.map(String.init))])
                }
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
            if !encoded.pending.keys.isEmpty { holder.committed(encoded.deltas) }
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
        (encoded.readings, encoded.readingRows, encoded.deltas, encoded.pending) = encodeReadings(bursts)
        for key in encoded.deltas.entries.keys where !storedPairs.contains(Self.pair(key.device, key.metric)) {
            encoded.newPairs.insert(Self.pair(key.device, key.metric))
        }
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
        // What the last connection held is gone with it: once its lock is free, the fold
        // rebuilds those deltas from their readings.
        holder = HeldRollups()
        let fresh = try PostgresConnection(url: url)
        let writer = try fresh.query("SELECT nextval('rollup_writer')").rows.first?.first.flatMap { $0.flatMap(Int32.init) }
        guard let writer else { throw PostgresError(.query, message: "no writer id from rollup_writer") }
        try fresh.execute("SELECT pg_advisory_lock(x'68756270'::integer, \(writer))")
        holder.writer = writer
        connection = fresh
        return fresh
    }

    public var heldRollups: Int { holder.deltas.count }

    /// Writes the deltas held to `rollup_delta` and removes their batches' `rollup_pending`
    /// rows, in one transaction. If that fails, the connection is closed and what it held
    /// dropped: the fold rebuilds it from the readings.
    public func flushRollups() throws {
        guard holder.batches > 0, let connection, connection.isUsable else { return }
        let (data, rows) = holder.deltas.encoded()
        let writer = holder.writer, below = holder.nextBatch, batches = holder.batches
        do {
            try connection.transaction { () throws(PostgresError) in
                if rows > 0 { try connection.copyIn(RollupDeltas.copyStatement, data: data) }
                let removed = try connection.query(
                    "DELETE FROM rollup_pending WHERE writer = $1::integer AND batch < $2::bigint", [String(writer), String(below)]
                ).affectedRows
                guard removed == batches else {
                    throw PostgresError(.query, message: "rollup_pending held \(removed) of this writer's \(batches) batches")
                }
            }
            holder.flushed()
        } catch {
            connection.close()
            self.connection = nil
            holder = HeldRollups()
            throw error
        }
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

    /// The readings' COPY data and row count, the batch's rollup deltas, and its ranges
    /// for `rollup_pending`.
    private func encodeReadings(_ bursts: [IngestBurst]) -> ([UInt8], Int, RollupDeltas, PendingRanges) {
        var encoder = BinaryCopyEncoder(reservingCapacity: 1 << 20)
        var deltas = RollupDeltas()
        var pending = PendingRanges()
        for burst in bursts {
            let deviceKey = burst.device.key
            pending.beginDevice()
            for accepted in burst.frames {
                let base = accepted.baseMicros
                let seq = Int64(accepted.frame.seq)
                for reading in accepted.frame.readings {
                    let metricKey = metricKeys[reading.name]!
                    let ts = base + Int64(reading.offsetMicros)
                    deltas.add(device: deviceKey, metric: metricKey, tsMicros: ts, seq: seq, value: reading.value)
                    pending.add(device: deviceKey, seq: seq, tsMicros: ts)
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
        return (encoder.rowCount > 0 ? encoder.finish() : [], encoder.rowCount, deltas, pending)
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
