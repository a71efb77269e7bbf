import HubIngest
import Testing

@Suite("Cluster interest: which nodes' dashboards want a device's frames")
struct ClusterInterestTests {
    func names(_ interest: ClusterInterest, _ device: String) -> [String] {
        interest.nodes(for: device).map(\.node).sorted()
    }

    @Test("exact and glob patterns select the nodes that announced them")
    func exactAndGlob() {
        let interest = ClusterInterest()
        #expect(interest.update(node: "n1", version: 1, patterns: ["sensor-1", "kitchen-*"]))
        #expect(interest.update(node: "n2", version: 1, patterns: ["*"]))
        #expect(interest.update(node: "n3", version: 1, patterns: ["*-1", "sensor-2"]))
        #expect(names(interest, "sensor-1") == ["n1", "n2", "n3"])
        #expect(names(interest, "sensor-2") == ["n2", "n3"])
        #expect(names(interest, "kitchen-7") == ["n1", "n2"])
        #expect(names(interest, "kitchen") == ["n2"])
        #expect(names(interest, "sensor-10") == ["n2"])
    }

    @Test("an announcement of an older or the same version is ignored")
    func olderOrEqualIgnored() {
        let interest = ClusterInterest()
        #expect(interest.update(node: "n1", version: 5, patterns: ["a"]))
        #expect(!interest.update(node: "n1", version: 5, patterns: ["b"]))
        #expect(!interest.update(node: "n1", version: 4, patterns: ["b"]))
        #expect(!interest.update(node: "n1", version: 0, patterns: []))
        #expect(names(interest, "a") == ["n1"])
        #expect(names(interest, "b").isEmpty)
    }

    @Test("a newer version replaces the node's patterns: the old ones no longer match")
    func newerReplaces() {
        let interest = ClusterInterest()
        #expect(interest.update(node: "n1", version: 1, patterns: ["a", "g-*"]))
        #expect(names(interest, "a") == ["n1"])
        #expect(names(interest, "g-1") == ["n1"])
        #expect(interest.update(node: "n1", version: 2, patterns: ["b", "a"]))
        #expect(names(interest, "a") == ["n1"])
        #expect(names(interest, "b") == ["n1"])
        #expect(names(interest, "g-1").isEmpty)
        #expect(interest.update(node: "n1", version: 7, patterns: []))
        #expect(names(interest, "a").isEmpty)
        #expect(names(interest, "b").isEmpty)
        #expect(interest.nodes == ["n1"])
    }

    @Test("a removed node matches nothing and is no longer listed; it may announce again from any version")
    func removeNode() {
        let interest = ClusterInterest()
        interest.update(node: "n1", version: 3, patterns: ["a", "*"])
        interest.update(node: "n2", version: 1, patterns: ["a"])
        #expect(names(interest, "a") == ["n1", "n2"])
        interest.remove(node: "n1")
        interest.remove(node: "unknown")
        #expect(names(interest, "a") == ["n2"])
        #expect(names(interest, "z").isEmpty)
        #expect(interest.nodes == ["n2"])
        // A node that comes back (restarted, say) starts its versions over.
        #expect(interest.update(node: "n1", version: 1, patterns: ["z"]))
        #expect(names(interest, "z") == ["n1"])
        #expect(names(interest, "a") == ["n2"])
    }

    @Test("invalid patterns are ignored and the valid ones beside them kept")
    func invalidIgnored() {
        let interest = ClusterInterest()
        let long = String(repeating: "a", count: 129)
        #expect(interest.update(node: "n1", version: 1, patterns: ["ok-1", "bad pattern", "", "dé*", "a/b", long, "ok-*"]))
        #expect(names(interest, "ok-1") == ["n1"])
        #expect(names(interest, "ok-2") == ["n1"])
        #expect(names(interest, "bad pattern").isEmpty)
        #expect(names(interest, long).isEmpty)
        #expect(names(interest, "dé").isEmpty)
        #expect(interest.update(node: "n2", version: 1, patterns: ["*/*"]))
        #expect(interest.nodes(for: "x").isEmpty)
        #expect(interest.nodes.sorted() == ["n1", "n2"])
    }

    @Test("past maxPatterns, a node's patterns are cut to the first maxPatterns")
    func cutToMaxPatterns() {
        let interest = ClusterInterest()
        let patterns = (0...ClusterInterest.maxPatterns).map { "d-\($0)" }
        #expect(patterns.count == ClusterInterest.maxPatterns + 1)
        #expect(interest.update(node: "n1", version: 1, patterns: patterns))
        #expect(names(interest, "d-0") == ["n1"])
        #expect(names(interest, "d-\(ClusterInterest.maxPatterns - 1)") == ["n1"])
        #expect(names(interest, "d-\(ClusterInterest.maxPatterns)").isEmpty)
    }

    @Test("nodes lists every node that announced, with or without patterns")
    func knownNodes() {
        let interest = ClusterInterest()
        #expect(interest.nodes.isEmpty)
        interest.update(node: "n1", version: 1, patterns: ["a"])
        interest.update(node: "n2", version: 4, patterns: [])
        interest.update(node: "n3", version: 1, patterns: ["bad pattern"])
        interest.update(node: "n2", version: 2, patterns: ["b"])
        #expect(interest.nodes.sorted() == ["n1", "n2", "n3"])
        #expect(names(interest, "b").isEmpty)
        interest.remove(node: "n2")
        #expect(interest.nodes.sorted() == ["n1", "n3"])
    }

    @Test("concurrent announcements and removals of one node leave exactly what the last one applied")
    func concurrentAnnouncements() async {
        let interest = ClusterInterest()
        let workers = 4, rounds = 2_000
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    for round in 0..<rounds {
                        let version = UInt64(round * workers + worker + 1)
                        interest.update(node: "n1", version: version, patterns: ["v\(version)", "g\(version)-*"])
                        if round % 100 == 99 { interest.remove(node: "n2") }
                        interest.update(node: "n2", version: version, patterns: ["w\(version)"])
                    }
                }
            }
        }
        let last = UInt64(rounds * workers)
        #expect(names(interest, "v\(last)") == ["n1"])
        #expect(names(interest, "g\(last)-x") == ["n1"])
        let stale = (1..<last).filter { !interest.nodes(for: "v\($0)").isEmpty || !interest.nodes(for: "g\($0)-x").isEmpty }
        #expect(stale.isEmpty, "older versions still installed: \(stale.prefix(10))")
        // n2 was removed now and then: whatever is installed for it must be what `nodes` knows.
        let installed = (1...last).filter { !interest.nodes(for: "w\($0)").isEmpty }
        #expect(installed.count == (interest.nodes.contains("n2") ? 1 : 0), "n2 installed for \(installed.prefix(10))")
    }
}
