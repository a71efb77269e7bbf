import Foundation
import FuzzDriver

/// The session fuzz target: each input is a session program (`SessionFuzz`) against an
/// in-process hub core, so it links the transport and NIO's in-memory channels.
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    SessionFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if FUZZING
/// libFuzzer's name for the input function (only in the fuzz build: the test products
/// link every executable module, and two would clash).
@_cdecl("LLVMFuzzerTestOneInput")
public func libFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    fuzzOneInput(data, size)
}

// SwiftPM links an executable's entry point as `<module>_main`; under libFuzzer that is
// the fuzzer's driver.
@_cdecl("HubSessionFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(argc, argv, name: "hub-session-fuzz", fuzzOneInput)
}
#else
/// Without libFuzzer (a plain `swift build`): the corpus runner.
@main
struct CorpusRunner {
    static func main() {
        exit(FuzzDriver.main(CommandLine.argc, CommandLine.unsafeArgv, name: "hub-session-fuzz", fuzzOneInput))
    }
}
#endif
