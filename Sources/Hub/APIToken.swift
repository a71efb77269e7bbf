import Foundation
import HubIngest

/// The API token kept in the data folder when none is configured.
enum APIToken {
    static func loadOrCreate(in directory: URL) throws -> String {
        let file = directory.appendingPathComponent("api-token")
        if let existing = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            !existing.isEmpty
        {
            return existing
        }
        let token = DeviceToken.generate()
        try (token + "\n").write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        return token
    }
}
