import Foundation

/// The `CONNECT` options this client sends.
///
/// `echo` is false: a connection never receives its own publishes, even on a subject it
/// subscribes to. `headers` and `no_responders` are on, so a request nobody listens to is
/// answered at once with a 503 status instead of timing out.
struct ConnectOptions: Encodable, Equatable, Sendable {
    var verbose = false
    var pedantic = false
    var echo = false
    var headers = true
    var noResponders = true
    var lang = "swift"
    var version = "0.1.0"
    var `protocol` = 1
    var name: String

    enum CodingKeys: String, CodingKey {
        case verbose, pedantic, echo, headers, noResponders = "no_responders", lang, version, `protocol`, name
    }

    /// The options as one line of JSON, keys sorted.
    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings, numbers and booleans cannot fail.
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
