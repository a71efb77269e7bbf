import Foundation
import Postgres

/// The raw ceiling: the same rows written with plain binary COPY from one connection into a
/// table of the same layout (with its index), one transaction per batch, as the hub does.
struct CopyCeiling {
    static let batchRows = 5_000
    let url: String
    let readingsPerFrame: Int
    let devices: Int

    init(url: String, readingsPerFrame: Int, devices: Int) throws {
        self.url = url
        self.readingsPerFrame = readingsPerFrame
        self.devices = devices
    }

    /// - Returns: rows per second.
    func measure(rows: Int) throws -> Double {
        let connection = try PostgresConnection(url: url)
        try connection.execute("DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (LIKE reading INCLUDING ALL)")
        defer { try? connection.execute("DROP TABLE IF EXISTS bench_ceiling") }
        // Build every batch first, so only the database work is timed.
        var batches: [[UInt8]] = []
        var seq: Int64 = 0
        let base = Int64(Date().timeIntervalSince1970 * 1e6)
        var written = 0
        while written < rows {
            var encoder = BinaryCopyEncoder(reservingCapacity: Self.batchRows * 64)
            for _ in 0..<(Self.batchRows / readingsPerFrame) {
                seq += 1
                let device = Int32(seq % Int64(devices))
                for metric in 0..<readingsPerFrame {
                    encoder.beginRow(fields: 7)
                    encoder.appendInt32(device)
                    encoder.appendInt32(Int32(metric))
                    encoder.appendInt64(seq)
                    encoder.appendTimestamp(unixMicros: base + seq)
                    encoder.appendInt16(1)
                    encoder.appendDouble(Double(seq) * 0.5)
                    encoder.appendNull()
                }
            }
            written += encoder.rowCount
            batches.append(encoder.finish())
        }
        let start = ContinuousClock.now
        for batch in batches {
            try connection.transaction { () throws(PostgresError) in
                try connection.copyIn(
                    "COPY bench_ceiling (device_key, metric_key, seq, ts, value_type, value, text_value) FROM STDIN (FORMAT binary)",
                    data: batch)
            }
        }
        let elapsed = ContinuousClock.now - start
        return Double(written) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}
