import ArgumentParser
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation

extension BenchCommand {
    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "history",
            abstract: "Store days of telemetry for a few devices in a stopped server's database (issue 17's query benchmark).",
            discussion: """
                Each device uploads one packet of 3 samples × 6 registers every 15 s (sampled every 5 s), values following \
                a day curve with noise, the last upload now. Then time GET /aggregation/historical for one device and \
                one day.
                """
        )

        @Option(help: "Database directory.") var dataDir: String
        @Option(help: "Devices (HIST-0, HIST-1, …).") var devices = 10
        @Option(help: "Days of uploads per device.") var days = 7

        func run() async throws {
            let database = try EcoWattDatabase(path: EcoWattDatabase.path(inDirectory: dataDir))
            let uploads = days * 5_760
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000) / 15_000 * 15_000
            var generator = SystemRandomNumberGenerator()
            for device in 0..<devices {
                for start in stride(from: 0, to: uploads, by: 5_000) {
                    let records = (start..<min(uploads, start + 5_000)).map { index in
                        Self.record(device: "HIST-\(device)", index: index, lastMs: nowMs - Int64(uploads - 1 - index) * 15_000, using: &generator)
                    }
                    try await database.fill(records)
                }
                print("HIST-\(device): \(uploads) uploads, \(uploads * 3) samples")
            }
            try database.close()
        }

        static func record(device: String, index: Int, lastMs: Int64, using generator: inout SystemRandomNumberGenerator) -> IngestRecord {
            let times = (0..<3).map { lastMs - Int64(2 - $0) * 5_000 }
            let rows = times.map { time -> [UInt16] in
                // Sunlight over the day: output power and current follow it, voltages and frequency stay near nominal.
                let sun = max(0, sin(Double(time % 86_400_000) / 86_400_000 * 2 * .pi - .pi / 2))
                func noisy(_ value: Double, _ spread: Int) -> UInt16 { UInt16(clamping: Int(value) + Int.random(in: -spread...spread, using: &generator)) }
                return [noisy(2300, 4), noisy(10 + 60 * sun, 1), noisy(5000, 2), noisy(2800 + 800 * sun, 6), noisy(2750 + 800 * sun, 6), noisy(3000 * sun, 8)]
            }
            var packet = DecodedPacket(
                index: 0,
                marker: 0x01,
                method: "bitpack",
                registerLayout: [0, 1, 5, 6, 7, 9],
                sampleCount: 3,
                samples: rows,
                sampleTimesMs: times,
                lastSampleEpochMs: lastMs,
                approximate: false,
                truncated: false,
                reason: nil,
                detail: nil,
                blob: [],
                compressedSize: 30,
                originalSize: 36
            )
            packet.serial = Int64(index + 1)
            return IngestRecord(deviceID: device, nonce: UInt32(index + 1), receivedAtMs: lastMs + 300, packets: [packet], streamState: DeviceStreamState())
        }
    }
}
