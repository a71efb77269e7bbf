import CLibPQ

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
        rows = (0..<rowCount).map { row in
            (0..<columnCount).map { column in
                PQgetisnull(result, Int32(row), Int32(column)) == 1
                    ? nil : String(cString: PQgetvalue(result, Int32(row), Int32(column)))
            }
        }
        affectedRows = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
    }

    /// The value at a row and column name, or `nil` for SQL NULL.
    public subscript(row: Int, column: String) -> String? {
        guard let index = columns.firstIndex(of: column) else { return nil }
        return rows[row][index]
    }
}
