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
        @Flag(help: "Do not store anything: time the store's queries for one device and one day (median of 20).")
        var queryOnly = false

        func run() async throws {
            let database = try EcoWattDatabase(path: EcoWattDatabase.path(inDirectory: dataDir))
            if queryOnly {
                try await Self.timeQueries(database)
                try database.close()
                return
            }
            let uploads = days * 5_760
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000) / 15_000 * 15_000
            var generator = SystemRandomNumberGenerator()
            // In arrival order (every device's upload of one period, then the next period), as a server stores them.
            let total = uploads * devices
            for start in stride(from: 0, to: total, by: 5_000) {
                let records = (start..<min(total, start + 5_000)).map { position in
                    let index = position / devices
                    return Self.record(
                        device: "HIST-\(position % devices)",
                        index: index,
                        lastMs: nowMs - Int64(uploads - 1 - index) * 15_000,
                        using: &generator
                    )
                }
                try await database.fill(records)
            }
            print("\(devices) devices: \(uploads) uploads and \(uploads * 3) samples each")
            // The minute and hour rollups a running server would compute in the background (a day per device a round).
            let writer = GroupCommitWriter(database: database)
            let loop = Task { try await writer.run() }
            let store = SQLiteTelemetryStore(database: database, writer: writer)
            var rounds = 0
            while try await store.refreshRollups(limit: 1000) > 0 { rounds += 1 }
            writer.finish()
            _ = try? await loop.value
            print("rollups computed in \(rounds) rounds")
            try database.close()
        }

        /// The store's part of `GET /aggregation/historical` for HIST-0 and the day ending a day ago: raw samples at
        /// two limits and the rollups, without HTTP and JSON.
        static func timeQueries(_ database: EcoWattDatabase) async throws {
            let writer = GroupCommitWriter(database: database)
            let store = SQLiteTelemetryStore(database: database, writer: writer)
            let end = Int64(Date().timeIntervalSince1970 * 1000) - 86_400_000
            let start = end - 86_400_000
            func median(_ label: String, _ query: () async throws -> Int) async throws {
                var times: [Double] = []
                var count = 0
                for _ in 0..<20 {
                    let clock = ContinuousClock()
                    let began = clock.now
                    count = try await query()
                    let took = clock.now - began
                    times.append(Double(took.components.attoseconds) / 1e15 + Double(took.components.seconds) * 1000)
                }
                print("\(label): \(count) rows, median \(String(format: "%.2f", times.sorted()[10])) ms")
            }
            for limit in [1_000, 10_000, 20_000] {
                try await median("raw samples, limit \(limit)") {
                    try await store.samples(deviceID: "HIST-0", fromMs: start, toMs: end, limit: limit).count
                }
            }
            for resolution in RollupResolution.allCases {
                try await median("\(resolution.rawValue) rollups") {
                    try await store.rollups(deviceID: "HIST-0", resolution: resolution, fromMs: start, toMs: end, limit: 10_000).count
                }
            }
        }

        static func record(device: String, index: Int, lastMs: Int64, using generator: inout SystemRandomNumberGenerator) -> IngestRecord {
            let times = (0..<3).map { lastMs - Int64(2 - $0) * 5_000 }
            let rows = times.map { time -> [UInt16] in
                // Sunlight over the day: output power and current follow it, voltages and frequency stay near nominal.
                let sun = max(0, sin(Double(time % 86_400_000) / 86_400_000 * 2 * .pi - .pi / 2))
                func noisy(_ value: Double, _ spread: Int) -> UInt16 {
                    UInt16(clamping: Int(value) + Int.random(in: -spread...spread, using: &generator))
                }
                return [
                    noisy(2300, 4), noisy(10 + 60 * sun, 1), noisy(5000, 2), noisy(2800 + 800 * sun, 6), noisy(2750 + 800 * sun, 6),
                    noisy(3000 * sun, 8),
                ]
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
            return IngestRecord(
                deviceID: device,
                nonce: UInt32(index + 1),
                receivedAtMs: lastMs + 300,
                packets: [packet],
                streamState: DeviceStreamState()
            )
        }
    }
}
