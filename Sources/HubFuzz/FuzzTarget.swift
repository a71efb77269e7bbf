import Foundation
import HubProtocol
import HubTransport

/// Which target the inputs go to: `HUB_FUZZ_TARGET=session` runs each input as a session
/// program (`SessionFuzz`); otherwise each is parsed (below).
let sessionTarget = ProcessInfo.processInfo.environment["HUB_FUZZ_TARGET"] == "session"

/// One input, read two ways: as a device's binary frame, and as a `/live` text message.
/// A frame that decodes must encode back to exactly its bytes; nothing may crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if sessionTarget {
        SessionFuzz.run(bytes)
        return 0
    }
    if let frame = try? TelemetryFrame(decoding: bytes, receivedAtMicros: 1_763_769_600_000_000) {
        precondition(frame.encoded() == Array(bytes), "a decoded frame does not encode back to its bytes")
    }
    _ = try? LiveClientMessage(text: String(decoding: bytes, as: UTF8.self), limits: .init(maxBytes: 65_536))
    return 0
}

#if FUZZING
// SwiftPM links an executable's entry point as `<module>_main`; under libFuzzer that is
// the fuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("HubFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
}
#else
/// Without libFuzzer (a plain `swift build`): runs every file of the given folders or
/// files through the same entry, as a regression check of a corpus.
@main
struct CorpusRunner {
    static func main() throws {
        var count = 0
        for argument in CommandLine.arguments.dropFirst() {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isFolder) else {
                throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: argument])
            }
            let files = isFolder.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: argument).sorted().map { "\(argument)/\($0)" }
                : [argument]
            for file in files {
                let input = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
                _ = input.withUnsafeBufferPointer { fuzzOneInput($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
                count += 1
            }
        }
        print("hub-fuzz: \(count) inputs, no failure")
    }
}
#endif
