import ArgumentParser
import EcoWattSimulator
import FirmwareImage
import Foundation

extension BenchCommand {
    /// `ecowatt bench ota-fleet`: many simulated devices download and verify a deployed image at once.
    struct OTAFleet: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ota-fleet",
            abstract: "Simulate N devices downloading a deployed firmware at once (check, initiate, chunks, verify, reboot).",
            discussion: """
                A FleetSimulator run in which only the OTA task comes due: every device boots, checks for an update one \\
                second later, and does exactly what the firmware does (spec §7.1): chunks in order, CBC chained across \\
                chunks, SHA-256 and PKCS#1 v1.5 verification with the public key from --keys-dir, then the reboot into \\
                the new version and POST /ota/{id}/complete. Deploy the version to BENCH-OTA-001 … or to all devices \\
                first. The run ends when every device has finished.
                """
        )
        @Option(help: "Server URL.") var url = "http://127.0.0.1:5001"
        @Option(help: "Concurrent devices.") var devices = 200
        @Option(help: "Version the devices report running (must differ from the deployed one).") var running = "0.0.1"
        @Option(help: "Keys directory holding the AES key and public key the devices trust.") var keysDir = "./keys"

        func run() async throws {
            var options = SimulationOptions(baseURL: url)
            options.devices = devices
            options.idPrefix = "BENCH-OTA-"
            options.firmwareVersion = running
            options.firmwareKeys = try FirmwareKeys(directory: keysDir)
            options.duration = 3600
            options.rampUp = 0
            // Only the OTA check comes due (one second after boot); the other tasks are pushed out of the run.
            let never = 1e9
            options.intervals.poll = never
            options.intervals.upload = never
            options.intervals.config = never
            options.intervals.command = never
            options.intervals.energy = never
            options.intervals.ota = 1
            let stop = SimulationStop()
            let expected = devices
            let report = try await FleetSimulator(options: options).run(stop: stop) { progress in
                if progress.report.firmwareUpdates.count >= expected { stop.request() }
            }

            let updates = report.firmwareUpdates
            let failures = updates.compactMap(\.failure)
            let chunks = report.latency["GET /ota/chunk/{id}"]
            func ms(_ value: Double?) -> String { String(format: "%.2f ms", value ?? 0) }
            print("devices: \(devices), verified: \(updates.count - failures.count), failed: \(failures.count)")
            print(
                String(
                    format: "wall time: %.2f s (slowest device: %.2f s from the offer to its reboot)",
                    report.elapsedSeconds,
                    updates.map(\.seconds).max() ?? 0
                )
            )
            let count = chunks?.count ?? 0
            print(
                String(format: "chunk requests: %d (%.0f/s over the whole run)", count, Double(count) / report.elapsedSeconds)
            )
            print(
                "chunk latency p50 \(ms(chunks?.p50)), p90 \(ms(chunks?.p90)), p99 \(ms(chunks?.p99)), max \(ms(chunks?.max))"
            )
            for failure in Set(failures).sorted().prefix(5) { print("failure: \(failure)") }
            for (error, times) in report.errors.sorted(by: { $0.value > $1.value }).prefix(5) {
                print("error: \(times)× \(error)")
            }
            if !failures.isEmpty || updates.count < devices || !report.errors.isEmpty { throw ExitCode.failure }
        }
    }
}
