import EcoWattStorage
import Foundation
import GRDB

extension SQLiteTelemetryStore: OutboxStore {
    public func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxPacket] {
        try await database.pool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT o.id AS outbox_id, o.packet_id, o.first_sample_id, o.last_sample_id, p.device_id, p.method, p.register_layout, p.last_sample_ms,
                      p.approximate, p.reason, p.original_size, p.compressed_size, p.received_at_ms
                    FROM mqtt_outbox o JOIN packets p ON p.id = o.packet_id
                    WHERE o.id > ? ORDER BY o.id LIMIT ?
                    """,
                arguments: [afterID, limit]
            )
            // Samples of the batch's packets in one primary-key range scan.
            let firsts = rows.compactMap { $0["first_sample_id"] as Int64? }
            let lasts = rows.compactMap { $0["last_sample_id"] as Int64? }
            var samples: [Int64: (rows: [[UInt16]], times: [Int64])] = [:]
            for row in try Row.fetchAll(
                db,
                sql: "SELECT packet_id, ts_ms, raw_values FROM samples WHERE id BETWEEN ? AND ? ORDER BY id",
                arguments: [firsts.min() ?? 0, lasts.max() ?? -1]
            ) {
                let text: String = row["raw_values"]
                let values = text.split(separator: ",").compactMap { UInt16($0) }
                samples[row["packet_id"], default: ([], [])].rows.append(values)
                samples[row["packet_id"], default: ([], [])].times.append(row["ts_ms"])
            }
            return rows.map { row in
                let packetID: Int64 = row["packet_id"]
                let layout: String = row["register_layout"]
                return OutboxPacket(
                    id: row["outbox_id"],
                    deviceID: row["device_id"],
                    method: row["method"],
                    registerLayout: layout.split(separator: ",").compactMap { Int($0) },
                    samples: samples[packetID]?.rows ?? [],
                    sampleTimesMs: samples[packetID]?.times ?? [],
                    lastSampleMs: row["last_sample_ms"],
                    approximate: row["approximate"],
                    reason: row["reason"],
                    originalSize: row["original_size"] ?? 0,
                    compressedSize: row["compressed_size"] ?? 0,
                    receivedAtMs: row["received_at_ms"]
                )
            }
        }
    }

    public func deleteOutbox(through id: Int64) async throws {
        try await writer.write { db in
            try db.cachedStatement(sql: "DELETE FROM mqtt_outbox WHERE id <= ?").execute(arguments: [id])
        }
    }

    public func outboxCount() async throws -> Int {
        try await database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM mqtt_outbox") ?? 0 }
    }
}
