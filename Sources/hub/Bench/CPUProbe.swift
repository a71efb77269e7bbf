import Foundation

/// CPU time of the hub process and of the PostgreSQL server processes, from /proc.
struct CPUProbe: Sendable {
    let hubPID: Int32
    let postmasterPIDFile: URL

    struct Sample {
        var hubTicks: Int
        var databaseTicks: [Int32: Int]
        var at: Date
    }

    func sample() -> Sample {
        var database: [Int32: Int] = [:]
        if let text = try? String(contentsOf: postmasterPIDFile, encoding: .utf8),
            let postmaster = text.split(separator: "\n").first.flatMap({ Int32($0) })
        {
            for pid in Self.children(of: postmaster) + [postmaster] { database[pid] = Self.ticks(pid) ?? 0 }
        }
        return Sample(hubTicks: Self.ticks(hubPID) ?? 0, databaseTicks: database, at: Date())
    }

    /// Percent of one core used between two samples: (hub, database).
    static func usage(from start: Sample, to end: Sample) -> (hub: Double, database: Double) {
        let hertz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let seconds = end.at.timeIntervalSince(start.at)
        let hub = Double(end.hubTicks - start.hubTicks) / hertz / seconds * 100
        let database = end.databaseTicks.reduce(0) { $0 + $1.value - (start.databaseTicks[$1.key] ?? 0) }
        return (hub, Double(database) / hertz / seconds * 100)
    }

    /// The hub's resident set size in bytes.
    func hubRSS() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(hubPID)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes * 1024
    }

    /// utime + stime of a process, in clock ticks.
    static func ticks(_ pid: Int32) -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command name: state is field 3, utime 14, stime 15 (1-based, overall).
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    static func children(of parent: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent
        }
    }
}
