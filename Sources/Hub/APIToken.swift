import Foundation
import HubIngest

#if canImport(Glibc)
import Glibc
#endif

/// The API tokens: the one kept in the data folder when none is configured, and the rule
/// every configured one must meet.
public enum APIToken {
    /// The shortest `--api-token` or `--read-token` the hub takes (contract section 7).
    static let minimumLength = 16

    struct Unusable: Error, CustomStringConvertible {
        let description: String
    }

    /// Checks a configured token. - Throws: naming `flag` when it is empty or too short.
    static func check(_ token: String?, flag: String) throws {
        guard let token else { return }
        guard token.count >= minimumLength else {
            throw Unusable(description: "\(flag) must be at least \(minimumLength) characters (it has \(token.count))")
        }
    }

    /// The token in `<directory>/api-token`, if one of usable length is there (the terminal
    /// tools read it; they never write one).
    public static func load(in directory: URL) -> String? {
        let file = directory.appendingPathComponent("api-token")
        guard let existing = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            existing.count >= minimumLength
        else { return nil }
        return existing
    }

    /// The token in `<directory>/api-token`, or a new one written there. The file is
    /// created readable by its owner alone (0600) from the first byte, not chmod-ed later.
    static func loadOrCreate(in directory: URL) throws -> String {
        let file = directory.appendingPathComponent("api-token")
        if let existing = load(in: directory) {
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
            return existing
        }
        let token = DeviceToken.generate()
        let temporary = directory.appendingPathComponent(".api-token-\(UUID().uuidString)").path
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw Unusable(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array((token + "\n").utf8)
        let written = write(descriptor, bytes, bytes.count)
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0, rename(temporary, file.path) == 0 else {
            unlink(temporary)
            throw Unusable(description: "cannot write \(file.path): \(String(cString: strerror(errno)))")
        }
        return token
    }
}
