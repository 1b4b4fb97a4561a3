import EcoWattStorage
import Foundation
import GRDB

extension SQLiteTelemetryStore: OutboxStore {
    public func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxPacket] {
        try await database.pool.read { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT id, packet_id FROM mqtt_outbox WHERE id > ? ORDER BY id LIMIT ?"
                ),
                arguments: [afterID, limit]
            )
            // Each chunk of the batch read and decoded once (a device's consecutive packets share one).
            var chunks: [Int64: ChunkReading.Stored] = [:]
            return try rows.compactMap { row -> OutboxPacket? in
                let (chunkID, place) = ChunkReading.split(row["packet_id"])
                if chunks[chunkID] == nil { chunks[chunkID] = try TelemetryChunks.load(db, id: chunkID) }
                // Gone (retention dropped it before the broker came back): nothing to publish.
                return chunks[chunkID]?.outboxPacket(id: row["id"], place: place)
            }
        }
    }

    public func deleteOutbox(through id: Int64) async throws {
        try await writer.write { db in
            try db.cachedStatement(sql: "DELETE FROM mqtt_outbox WHERE id <= ?").execute(arguments: [id])
        }
    }

    public func outboxCount() async throws -> Int {
        try await database.pool.read { db in try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM mqtt_outbox")) ?? 0 }
    }
}
