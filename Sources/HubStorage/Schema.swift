import Foundation
import Postgres

/// The hub's schema: `schema.sql` from the repository root, shipped inside the binary.
public enum Schema {
    public static var sql: String {
        guard let url = Bundle.module.url(forResource: "schema", withExtension: "sql"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else { fatalError("schema.sql is missing from the HubStorage resources") }
        return text
    }

    /// Applies the schema; safe to repeat, and serialised against concurrent hubs or CLIs.
    public static func apply(on connection: PostgresConnection) throws(PostgresError) {
        try connection.transaction { () throws(PostgresError) in
            try connection.execute("SELECT pg_advisory_xact_lock(7420613)")
            try connection.execute(sql)
        }
    }
}
