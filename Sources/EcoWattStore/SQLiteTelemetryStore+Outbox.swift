import Foundation
import GRDB

/// The MQTT outbox: messages queued with their upload, removed once the broker acknowledged them.
public protocol OutboxStore: Sendable {
    /// Messages with an id above `afterID`, oldest first.
    func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxMessage]
    /// Removes acknowledged messages.
    func deleteOutbox(ids: [Int64]) async throws
    /// Messages waiting.
    func outboxCount() throws -> Int
}

extension SQLiteTelemetryStore: OutboxStore {
    public func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxMessage] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT id, device_id, topic, payload FROM mqtt_outbox WHERE id > ? ORDER BY id LIMIT ?",
                arguments: [afterID, limit]
            ).map { row in
                OutboxMessage(id: row["id"], deviceID: row["device_id"], topic: row["topic"], payload: Array(row["payload"] as Data))
            }
        }
    }

    public func deleteOutbox(ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await writer.write { db in
            let statement = try db.cachedStatement(sql: "DELETE FROM mqtt_outbox WHERE id = ?")
            for id in ids { try statement.execute(arguments: [id]) }
        }
    }

    public func outboxCount() throws -> Int {
        try database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM mqtt_outbox") ?? 0 }
    }
}
