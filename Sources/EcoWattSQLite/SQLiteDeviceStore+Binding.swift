import EcoWattProtocol
import EcoWattStorage
import GRDB

extension SQLiteDeviceStore: BindingStore {
    public func bindings() async throws -> [String: DeviceBindingRecord] {
        try await database.pool.read { db in
            var bindings: [String: DeviceBindingRecord] = [:]
            let rows = try Row.fetchCursor(
                db.cachedStatement(
                    sql: "SELECT device_id, bound_address, bound_at_ms FROM devices WHERE bound_address IS NOT NULL"
                )
            )
            while let row = try rows.next() {
                bindings[row[0]] = DeviceBindingRecord(address: row[1], atMs: row[2])
            }
            return bindings
        }
    }

    static func heldMessage(_ row: Row) -> HeldMessage? {
        guard let kind = HeldMessageKind(rawValue: row["kind"]), let body = JSONValue(storedText: row["body"]) else { return nil }
        return HeldMessage(
            id: row["id"],
            deviceID: row["device_id"],
            address: row["address"],
            kind: kind,
            body: body,
            receivedAtMs: row["received_at_ms"]
        )
    }

    public func heldMessages() async throws -> [HeldMessage] {
        try await database.pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM held_messages ORDER BY id")).compactMap(Self.heldMessage)
        }
    }

    public func heldMessages(deviceID: String) async throws -> [HeldMessage] {
        try await database.pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM held_messages WHERE device_id = ? ORDER BY id"), arguments: [deviceID])
                .compactMap(Self.heldMessage)
        }
    }

    public func hold(_ message: HeldMessage) async throws -> HeldMessage {
        let retention = retention
        return try await writer.write { db in
            try db.cachedStatement(
                sql: "DELETE FROM held_messages WHERE device_id = ? AND address = ? AND kind = ?"
            ).execute(
                arguments: [message.deviceID, message.address, message.kind.rawValue]
            )
            try Retention.removed(db, .heldMessages, count: db.changesCount, dropped: false)
            try db.cachedStatement(
                sql: "INSERT INTO held_messages (device_id, address, kind, body, received_at_ms) VALUES (?, ?, ?, ?, ?)"
            ).execute(
                arguments: [message.deviceID, message.address, message.kind.rawValue, message.body.serialized, message.receivedAtMs]
            )
            var stored = message
            stored.id = db.lastInsertedRowID
            try Retention.added(db, .heldMessages, deviceID: message.deviceID, pending: false, policy: retention)
            return stored
        }
    }

    public func deleteHeld(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await writer.write { db in
            for id in ids {
                try db.cachedStatement(sql: "DELETE FROM held_messages WHERE id = ?").execute(arguments: [id])
                try Retention.removed(db, .heldMessages, count: db.changesCount, dropped: false)
            }
        }
    }
}
