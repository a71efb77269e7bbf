import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The data folder, checked at start so a read-only disk, a full disk or a path through a
/// file fails at once with a message that names the folder and the cause.
enum DataFolder {
    struct Unusable: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "cannot use the data folder \(path): \(reason)" }
    }

    /// Creates the folder if needed, makes it `0700` (the API token and the embedded
    /// cluster live here), and proves it takes a write. Run as root, the folder is owned by
    /// `owner` (the embedded cluster's user), so that user can reach its cluster inside
    /// while nobody else can even list the folder.
    static func prepare(_ url: URL, owner: String? = nil) throws {
        let path = url.standardizedFileURL.path
        // mkdir per missing component, for the system's own words ("Not a directory", …).
        var missing: [String] = []
        var existing = path
        while !FileManager.default.fileExists(atPath: existing), existing != "/" {
            missing.append(existing)
            existing = (existing as NSString).deletingLastPathComponent
        }
        for component in missing.reversed() where mkdir(component, component == path ? 0o700 : 0o755) != 0 && errno != EEXIST {
            throw Unusable(path: path, reason: String(cString: strerror(errno)))
        }
        guard chmod(path, 0o700) == 0 else { throw Unusable(path: path, reason: String(cString: strerror(errno))) }
        if let owner, let user = getpwnam(owner), chown(path, user.pointee.pw_uid, user.pointee.pw_gid) != 0 {
            throw Unusable(path: path, reason: String(cString: strerror(errno)))
        }
        let probe = url.appendingPathComponent(".write-check").path
        let file = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard file >= 0 else { throw Unusable(path: path, reason: String(cString: strerror(errno))) }
        defer {
            close(file)
            unlink(probe)
        }
        // A page of data, flushed: a full disk shows here rather than halfway through initdb.
        let page = [UInt8](repeating: 0, count: 4096)
        guard write(file, page, page.count) == page.count, fsync(file) == 0 else {
            throw Unusable(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
