import EcoWattFuzzing
import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing

/// The fuzzer's committed corpus and every crash it ever found, replayed through the harness on every test run
/// (`scripts/fuzz.sh` adds new finds; a crash reproducer goes into `Regressions/` with its fix).
@Suite(.serialized) struct FuzzRegressionTests {
    static func inputs(_ folder: String) throws -> [(String, [UInt8])] {
        let directory = try #require(Bundle.module.url(forResource: folder, withExtension: nil))
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        return try names.map { ($0, Array(try Data(contentsOf: directory.appendingPathComponent($0)))) }
    }

    @Test func everyCrashTheFuzzerFoundRunsCleanly() throws {
        for (_, input) in try Self.inputs("Regressions") {
            DeviceInputHarness.run(input)
        }
    }

    @Test func theSeedsAndTheCommittedCorpusReachEveryCodecTheTemporalModelAndBothClocks() throws {
        DeviceInputHarness.coverage.reset()
        let seeds = try FuzzSeeds.make(conformance: Conformance.directory)
        let corpus = try Self.inputs("Corpus")
        #expect(seeds.count > 800)
        #expect(corpus.count > 100, "scripts/fuzz.sh SECONDS --merge keeps what a fuzz run adds")
        for input in seeds.map(\.input) + corpus.map(\.1) {
            DeviceInputHarness.run(input)
        }
        #expect(DeviceInputHarness.coverage.missing == [], "\(DeviceInputHarness.coverage.report)")
    }
}
