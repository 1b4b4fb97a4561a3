import EcoWattFuzzing
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `EcoWattFuzz`: the libFuzzer driver over ``DeviceInputHarness`` (built with `-DECOWATT_LIBFUZZER` and
/// `-sanitize=fuzzer` by `scripts/fuzz.sh`), and in a normal build the tool that writes seeds and replays inputs.
///
///     EcoWattFuzz seed --conformance DIR --out DIR     write the seed inputs
///     EcoWattFuzz replay [--require-all] PATH...       run files (or every file of directories) through the harness
///     EcoWattFuzz [libFuzzer options] CORPUS...        (fuzzing build) fuzz; prints what was reached at exit
@main struct EcoWattFuzz {
    static func main() throws {
        #if ECOWATT_LIBFUZZER
        atexit {
            print("==> device-input paths reached by the inputs this run executed:")
            print(DeviceInputHarness.coverage.report)
        }
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(
            LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                DeviceInputHarness.run(size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : [])
                return 0
            }
        )
        #else
        var arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "seed":
            guard arguments.count == 5, arguments[1] == "--conformance", arguments[3] == "--out" else { usage() }
            let out = URL(fileURLWithPath: arguments[4])
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let seeds = try FuzzSeeds.make(conformance: URL(fileURLWithPath: arguments[2]))
            for (name, input) in seeds {
                try Data(input).write(to: out.appendingPathComponent(name))
            }
            print("wrote \(seeds.count) seeds to \(out.path)")
        case "replay":
            arguments.removeFirst()
            let requireAll = arguments.first == "--require-all"
            if requireAll { arguments.removeFirst() }
            let files = arguments.flatMap(Self.files)
            for file in files {
                DeviceInputHarness.run(Array(try Data(contentsOf: file)))
            }
            print("replayed \(files.count) inputs; device-input paths reached:")
            print(DeviceInputHarness.coverage.report)
            if requireAll, !DeviceInputHarness.coverage.missing.isEmpty {
                print("error: not reached: \(DeviceInputHarness.coverage.missing.map(\.rawValue).joined(separator: "; "))")
                exit(1)
            }
        default:
            usage()
        }
        #endif
    }

    static func files(_ path: String) -> [URL] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else { return [URL(fileURLWithPath: path)] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.sorted().filter { !$0.hasPrefix(".") }.map { URL(fileURLWithPath: path).appendingPathComponent($0) }
    }

    static func usage() -> Never {
        print("usage: EcoWattFuzz seed --conformance DIR --out DIR | EcoWattFuzz replay [--require-all] PATH...")
        exit(2)
    }
}

#if ECOWATT_LIBFUZZER
/// libFuzzer's entry for programs with their own `main` (SwiftPM links every executable's `main` to its `@main`).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif
