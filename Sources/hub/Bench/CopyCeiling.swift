import Foundation
import Postgres

/// The raw ceilings `hub bench ingest` compares the hub with, measured on the same database
/// in the same run, from one connection, one transaction per COPY:
/// - **same layout**: the hub's rows written with plain binary COPY into a table like
///   `reading` (with its indexes), in batches of 5,000, as the hub does;
/// - **narrow**: the narrowest reading rows, `(device_id int4, ts timestamptz, metric int2,
///   value float8)` with a btree on `(device_id, ts)`, 10,000 rows per COPY, 2 M rows, the
///   median of 3 runs after one warm-up: the fastest one backend takes readings at all.
struct CopyCeiling {
    enum Layout {
        case sameAsHub
        case narrow
    }

    let url: String
    let layout: Layout
    let readingsPerFrame: Int
    let devices: Int

    var batchRows: Int { layout == .narrow ? 10_000 : 5_000 }

    private var table: String { layout == .narrow ? "bench_ceiling_narrow" : "bench_ceiling" }

    private var create: String {
        switch layout {
        case .sameAsHub:
            "CREATE TABLE \(table) (LIKE reading INCLUDING ALL)"
        case .narrow:
            """
            CREATE TABLE \(table) (device_id int4 NOT NULL, ts timestamptz NOT NULL, metric int2 NOT NULL, value float8 NOT NULL);
            CREATE INDEX ON \(table) (device_id, ts)
            """
        }
    }

    private var copy: String {
        switch layout {
        case .sameAsHub: "COPY \(table) (device_key, metric_key, seq, ts, value_type, value, text_value) FROM STDIN (FORMAT binary)"
        case .narrow: "COPY \(table) (device_id, ts, metric, value) FROM STDIN (FORMAT binary)"
        }
    }

    /// The narrow ceiling as the reference asks: 2 M rows, median of 3 after a warm-up.
    func measureNarrow() throws -> Double {
        _ = try measure(rows: 2_000_000)
        let runs = try (0..<3).map { _ in try measure(rows: 2_000_000) }.sorted()
        return runs[1]
    }

    /// Writes `rows` rows into a fresh table. - Returns: rows per second.
    func measure(rows: Int) throws -> Double {
        let connection = try PostgresConnection(url: url)
        try connection.execute("DROP TABLE IF EXISTS \(table); \(create)")
        defer { try? connection.execute("DROP TABLE IF EXISTS \(table)") }
        // Build every batch first, so only the database work is timed.
        let batches = encode(rows: rows)
        let start = ContinuousClock.now
        for batch in batches {
            try connection.transaction { () throws(PostgresError) in try connection.copyIn(copy, data: batch.bytes) }
        }
        let elapsed = ContinuousClock.now - start
        let written = batches.reduce(0) { $0 + $1.rows }
        return Double(written) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    private func encode(rows: Int) -> [(bytes: [UInt8], rows: Int)] {
        var batches: [(bytes: [UInt8], rows: Int)] = []
        var seq: Int64 = 0
        let base = Int64(Date().timeIntervalSince1970 * 1e6)
        var written = 0
        while written < rows {
            var encoder = BinaryCopyEncoder(reservingCapacity: batchRows * 64)
            for _ in 0..<max(1, batchRows / readingsPerFrame) {
                seq += 1
                let device = Int32(seq % Int64(devices))
                for metric in 0..<readingsPerFrame {
                    switch layout {
                    case .sameAsHub:
                        encoder.beginRow(fields: 7)
                        encoder.appendInt32(device)
                        encoder.appendInt32(Int32(metric))
                        encoder.appendInt64(seq)
                        encoder.appendTimestamp(unixMicros: base + seq)
                        encoder.appendInt16(1)
                        encoder.appendDouble(Double(seq) * 0.5)
                        encoder.appendNull()
                    case .narrow:
                        encoder.beginRow(fields: 4)
                        encoder.appendInt32(device)
                        encoder.appendTimestamp(unixMicros: base + seq)
                        encoder.appendInt16(Int16(truncatingIfNeeded: metric))
                        encoder.appendDouble(Double(seq) * 0.5)
                    }
                }
            }
            written += encoder.rowCount
            batches.append((encoder.finish(), encoder.rowCount))
        }
        return batches
    }
}
