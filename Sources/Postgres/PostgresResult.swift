import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The rows of a finished statement, copied out of libpq in text form.
public struct PostgresResult: Sendable {
    public let columns: [String]
    public let rows: [[String?]]
    /// The number of rows a command touched (`UPDATE`, `DELETE`, `COPY`…), or 0.
    public let affectedRows: Int

    init(_ result: OpaquePointer) {
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        // COPY results have fields without names.
        columns = (0..<columnCount).map { PQfname(result, Int32($0)).map { String(cString: $0) } ?? "" }
        rows = (0..<Int32(rowCount)).map { row in
            let row = PostgresRow(result: result, row: row)
            return (0..<columnCount).map(row.string)
        }
        affectedRows = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
    }

    /// The value at a row and column name, or `nil` for SQL NULL.
    public subscript(row: Int, column: String) -> String? {
        guard let index = columns.firstIndex(of: column) else { return nil }
        return rows[row][index]
    }
}

/// One row of a result while it is read (``PostgresConnection/query(_:_:rows:)``), in
/// text form, with numbers parsed straight from libpq's buffer.
public struct PostgresRow {
    let result: OpaquePointer
    let row: Int32

    private func text(_ column: Int) -> UnsafePointer<CChar>? {
        PQgetisnull(result, row, Int32(column)) == 1 ? nil : UnsafePointer(PQgetvalue(result, row, Int32(column)))
    }

    /// The value as text, or `nil` for SQL NULL.
    public func string(_ column: Int) -> String? {
        text(column).map { String(cString: $0) }
    }

    /// The value as an integer, or `nil` for SQL NULL or anything else.
    public func int64(_ column: Int) -> Int64? {
        guard let text = text(column) else { return nil }
        var end: UnsafeMutablePointer<CChar>?
        errno = 0
        let value = strtoll(text, &end, 10)
        return errno == 0 && end != UnsafeMutablePointer(mutating: text) && end?.pointee == 0 ? value : nil
    }

    /// The value as a double (PostgreSQL's `NaN` and `Infinity` included), or `nil` for
    /// SQL NULL or anything else.
    public func double(_ column: Int) -> Double? {
        guard let text = text(column) else { return nil }
        var end: UnsafeMutablePointer<CChar>?
        let value = strtod(text, &end)
        return end != UnsafeMutablePointer(mutating: text) && end?.pointee == 0 ? value : nil
    }
}
