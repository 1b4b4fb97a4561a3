import EcoWattProtocol
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import GRDB
import Testing

@testable import EcoWattSQLite

/// Schema v12 converts a v11 database in place (issue 17): every packet, sample, queued MQTT message and open serial
/// survives, and the store reads them as it reads what it stored itself.
@Suite struct TelemetryMigrationTests {
    /// A v11 database with two devices: decoded packets, a raw 0x71 packet a later upload may decode, a re-timeable one,
    /// and two packets waiting in the MQTT outbox.
    static func makeVersion11(at path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let queue = try DatabaseQueue(path: path)
        try EcoWattDatabase.migrator.migrate(queue, upTo: "v11-packet-serials")
        try queue.write { db in
            for device in ["OLD-A", "OLD-B"] {
                try db.execute(
                    sql: """
                        INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, upload_count, last_nonce, admission)
                        VALUES (?, 1000, 9000, 3, 30, 'verified')
                        """,
                    arguments: [device]
                )
            }
            func packet(_ device: String, nonce: Int, last: Int64, decoded: Bool, serial: Int?, blob: [UInt8]? = nil) throws -> Int64 {
                try db.execute(
                    sql: """
                        INSERT INTO packets (device_id, nonce, received_at_ms, packet_index, marker, method, register_layout,
                          sample_count, last_sample_ms, decoded, approximate, truncated, reason, detail, blob, compressed_size,
                          original_size, serial) VALUES (?, ?, ?, 0, ?, ?, '0,1', 2, ?, ?, 0, 0, ?, ?, ?, 9, 8, ?)
                        """,
                    arguments: [
                        device, nonce, last + 300, decoded ? 1 : 0x71, decoded ? "bitpack" : "temporal", last, decoded,
                        decoded ? nil : "temporal_state_unknown", decoded ? nil : "reboot missed", blob.map { Data($0) }, serial,
                    ]
                )
                return db.lastInsertedRowID
            }
            func samples(_ device: String, packet: Int64, last: Int64, values: [[Int]]) throws -> Int64 {
                for (offset, row) in values.enumerated() {
                    try db.execute(
                        sql: """
                            INSERT INTO samples (device_id, packet_id, ts_ms, register_layout, raw_values, method, ratio, approximate)
                            VALUES (?, ?, ?, '0,1', ?, 'bitpack', 1.125, 0)
                            """,
                        arguments: [device, packet, last - Int64(values.count - 1 - offset) * 5000, row.map(String.init).joined(separator: ",")]
                    )
                }
                return db.lastInsertedRowID - Int64(values.count) + 1
            }
            let a1 = try packet("OLD-A", nonce: 10, last: 10_000, decoded: true, serial: 1)
            _ = try samples("OLD-A", packet: a1, last: 10_000, values: [[2300, 50], [2301, 51]])
            let b1 = try packet("OLD-B", nonce: 10, last: 10_000, decoded: true, serial: 1)
            let first = try samples("OLD-B", packet: b1, last: 10_000, values: [[10, 20], [11, 21]])
            try db.execute(sql: "UPDATE packets SET first_sample_id = ? WHERE id = ?", arguments: [first, b1])
            _ = try packet("OLD-A", nonce: 20, last: 25_000, decoded: false, serial: 2, blob: [0x71, 1, 2])
            let a3 = try packet("OLD-A", nonce: 30, last: 40_000, decoded: true, serial: 3)
            _ = try samples("OLD-A", packet: a3, last: 40_000, values: [[2310, 60], [2311, 61]])
            try db.execute(sql: "INSERT INTO mqtt_outbox (packet_id, first_sample_id, last_sample_id) VALUES (?, NULL, NULL)", arguments: [a1])
            try db.execute(sql: "INSERT INTO mqtt_outbox (packet_id, first_sample_id, last_sample_id) VALUES (?, NULL, NULL)", arguments: [a3])
            try db.execute(sql: "DELETE FROM mqtt_outbox WHERE packet_id = ?", arguments: [a1])  // published meanwhile
        }
        try queue.close()
    }

    @Test func aVersion11DatabaseKeepsEveryPacketSampleAndQueuedMessage() async throws {
        let temporary = TemporaryStore()
        defer { temporary.remove() }
        try Self.makeVersion11(at: temporary.path)
        try await temporary.withStore { store in
            let packets = try await store.packets(deviceID: "OLD-A", limit: 10)
            #expect(packets.map(\.nonce) == [30, 20, 10])
            #expect(packets.map(\.decoded) == [true, false, true])
            #expect(packets[1].blob == [0x71, 1, 2] && packets[1].reason == "temporal_state_unknown" && packets[1].detail == "reboot missed")
            #expect(packets.allSatisfy { $0.registerLayout == [0, 1] && $0.sampleCount == 2 })
            let samples = try await store.samples(deviceID: "OLD-A", fromMs: 0, toMs: 100_000, limit: 100)
            #expect(samples.map(\.rawValues) == [[2300, 50], [2301, 51], [2310, 60], [2311, 61]])
            #expect(samples.map(\.timestampMs) == [5_000, 10_000, 35_000, 40_000])
            #expect(samples.allSatisfy { $0.method == "bitpack" && $0.ratio == 9.0 / 8.0 })
            #expect(try await store.latestSample(deviceID: "OLD-B")?.rawValues == [11, 21])

            // The queued message keeps its id and is read back with its samples.
            let queued = try await store.outboxBatch(afterID: 0, limit: 10)
            #expect(queued.map(\.id) == [2])
            #expect(queued.first?.samples == [[2310, 60], [2311, 61]] && queued.first?.deviceID == "OLD-A")
            // New outbox ids continue after the old ones.
            var next = IngestRecord.example("OLD-A", nonce: 40)
            next.queueForFeed = true
            try await store.submit(next).value()
            #expect(try await store.outboxBatch(afterID: 0, limit: 10).map(\.id) == [2, 3])

            // The raw packet is still found by its serial: a later upload decodes it.
            var completing = IngestRecord.example("OLD-A", nonce: 41)
            completing.updates = [StreamUpdate(serial: 2, samples: [[7, 8], [9, 10]], sampleTimesMs: [20_000, 25_000], timeEstimated: false)]
            try await store.submit(completing).value()
            let decoded = try await store.packets(deviceID: "OLD-A", limit: 10).first { $0.nonce == 20 }
            #expect(decoded?.decoded == true && decoded?.blob == nil && decoded?.reason == nil)
            #expect(try await store.samples(deviceID: "OLD-A", fromMs: 20_000, toMs: 25_000, limit: 10).map(\.rawValues) == [[7, 8], [9, 10]])
            // The packet that kept where its samples were can be re-timed.
            var retiming = IngestRecord.example("OLD-B", nonce: 50)
            retiming.updates = [StreamUpdate(serial: 1, samples: nil, sampleTimesMs: [6_000, 11_000], timeEstimated: false)]
            try await store.submit(retiming).value()
            #expect(try await store.samples(deviceID: "OLD-B", fromMs: 0, toMs: 12_000, limit: 10).map(\.timestampMs) == [6_000, 11_000])

            // Rollups of the migrated data are computed by the background refresh.
            while try await store.refreshRollups(limit: 1) > 0 {}
            let hour = try await store.rollups(deviceID: "OLD-A", resolution: .hour, fromMs: 0, toMs: 100_000, limit: 10)
            #expect(hour.count == 1 && hour[0].registers.map(\.register) == [0, 1])
            #expect(hour[0].registers[0].minimum == 7 && hour[0].registers[0].maximum == 2311)
        }
        let tables = try DatabaseInspector(path: temporary.path).rows("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .compactMap { $0["name"].string }
        #expect(!tables.contains("samples") && !tables.contains("packets"))
    }
}
