import Foundation
import FuzzDriver

#if FUZZING
/// libFuzzer's name for the input function (only in the fuzz build: the test products
/// link every executable module, and two would clash).
@_cdecl("LLVMFuzzerTestOneInput")
public func libFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    fuzzOneInput(data, size)
}

// SwiftPM links an executable's entry point as `<module>_main`; under libFuzzer that is
// the fuzzer's driver.
@_cdecl("HubFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(argc, argv, name: "hub-fuzz", fuzzOneInput)
}
#else
/// Without libFuzzer (a plain `swift build`): the corpus runner.
@main
struct CorpusRunner {
    static func main() {
        exit(FuzzDriver.main(CommandLine.argc, CommandLine.unsafeArgv, name: "hub-fuzz", fuzzOneInput))
    }
}
#endif
