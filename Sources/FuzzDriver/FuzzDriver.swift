import Foundation

/// The entry of a fuzz target (`hub-fuzz`, `hub-session-fuzz`): under libFuzzer
/// (`-sanitize=fuzzer -DFUZZING`) its driver; in a plain build, a corpus runner that feeds
/// every file of the given folders or files to the same function, as a regression check.
public enum FuzzDriver {
    public typealias TestOneInput = @convention(c) (UnsafePointer<UInt8>, Int) -> CInt

    /// Runs the fuzzer or the corpus; returns the process's exit status.
    public static func main(
        _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, name: String, _ test: TestOneInput
    ) -> CInt {
        #if FUZZING
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments, test)
        #else
        do {
            let count = try runCorpus(CommandLine.arguments.dropFirst(), test)
            print("\(name): \(count) inputs, no failure")
            return 0
        } catch {
            FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
            return 1
        }
        #endif
    }

    private static func runCorpus(_ paths: ArraySlice<String>, _ test: TestOneInput) throws -> Int {
        var count = 0
        for path in paths {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: path])
            }
            let files = isFolder.boolValue ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { "\(path)/\($0)" } : [path]
            for file in files {
                let input = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
                _ = input.withUnsafeBufferPointer { test($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
                count += 1
            }
        }
        return count
    }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt
#endif
