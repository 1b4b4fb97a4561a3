import EcoWattProtocol
import EcoWattStorage
import GRDB

extension SQLiteDeviceStore: ConfigStore {
    static func loadState(_ db: Database, _ deviceID: String) throws -> ConfigState {
        // Columns by position (a read by name scans the row's names case-insensitively; this runs on every poll that
        // delivers and every acknowledgement).
        let row = try Row.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT running_json, pending_json, pending_created_at_ms, pending_delivered_at_ms FROM device_configs
                    WHERE device_id = ?
                    """
            ),
            arguments: [deviceID]
        )
        return ConfigState(
            running: JSONValue(storedText: row?[0]) ?? .object([]),
            pending: JSONValue(storedText: row?[1]),
            pendingCreatedAtMs: row?[2],
            pendingDeliveredAtMs: row?[3]
        )
    }

    /// Appends a history event (bounded per device and in total, see ``RetentionPolicy/configHistory``).
    func history(
        _ db: Database,
        _ deviceID: String,
        _ event: String,
        _ config: JSONValue?,
        _ detail: String?,
        _ now: Int64,
        pending: Bool = false
    ) throws {
        try db.cachedStatement(
            sql: "INSERT INTO config_history (device_id, event, config_json, detail, created_at_ms) VALUES (?, ?, ?, ?, ?)"
        ).execute(
            arguments: [deviceID, event, config?.serialized, detail, now]
        )
        try Retention.added(db, .configHistory, deviceID: deviceID, pending: pending, policy: retention)
    }

    public func configState(deviceID: String) async throws -> ConfigState {
        try await database.pool.read { db in try Self.loadState(db, deviceID) }
    }

    public func addPending(deviceID: String, update: JSONValue, nowMs: Int64) async throws -> ConfigState {
        try await writer.write { db in
            try Retention.adopt(db, deviceID: deviceID, nowMs: nowMs)
            let state = try Self.loadState(db, deviceID)
            let pending = JSONValue.merge(state.pending ?? .object([]), update)
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_configs (device_id, pending_json, pending_created_at_ms) VALUES (?1, ?2, ?3)
                    ON CONFLICT(device_id) DO UPDATE SET pending_json = ?2, pending_created_at_ms = ?3,
                      pending_delivered_at_ms = NULL
                    """
            ).execute(
                arguments: [deviceID, pending.serialized, nowMs]
            )
            try history(db, deviceID, "requested", update, nil, nowMs)
            return try Self.loadState(db, deviceID)
        }
    }

    public func deliverPending(deviceID: String, nowMs: Int64) async throws -> JSONValue? {
        let hasPending = try await database.pool.read { db in
            try Bool.fetchOne(
                db.cachedStatement(
                    sql: "SELECT pending_json IS NOT NULL FROM device_configs WHERE device_id = ?"
                ),
                arguments: [deviceID]
            ) ?? false
        }
        guard hasPending else { return nil }
        return try await writer.write { db in
            let state = try Self.loadState(db, deviceID)
            guard let pending = state.pending, case .object(let fields) = pending else { return nil }
            let changes = fields.contains { key, value in !ConfigUpdate.matches(value, state.running[key], key: key) }
            if !changes {
                // The device would change nothing and so sends no acknowledgement (spec §5.3): clear it now.
                try db.cachedStatement(
                    sql: "UPDATE device_configs SET pending_json = NULL, pending_delivered_at_ms = NULL WHERE device_id = ?"
                ).execute(
                    arguments: [deviceID]
                )
                try history(db, deviceID, "cleared_noop", pending, "delivered; changes nothing on the device", nowMs)
            } else if state.pendingDeliveredAtMs == nil {
                try db.cachedStatement(
                    sql: "UPDATE device_configs SET pending_delivered_at_ms = ? WHERE device_id = ?"
                ).execute(
                    arguments: [nowMs, deviceID]
                )
                try history(db, deviceID, "delivered", pending, nil, nowMs)
            }
            return pending
        }
    }

    public func acknowledge(deviceID: String, ack: JSONValue, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            let state = try Self.loadState(db, deviceID)
            guard let pending = state.pending, state.pendingDeliveredAtMs != nil else { return false }
            let running = JSONValue.merge(state.running, pending)
            try db.cachedStatement(
                sql: """
                    UPDATE device_configs SET running_json = ?, running_at_ms = ?, pending_json = NULL,
                      pending_delivered_at_ms = NULL WHERE device_id = ?
                    """
            ).execute(
                arguments: [running.serialized, nowMs, deviceID]
            )
            try history(db, deviceID, "applied", pending, ack.serialized, nowMs)
            return true
        }
    }

    public func recordRunning(deviceID: String, report: JSONValue, nowMs: Int64) async throws {
        try await admittingWrite(deviceID, nowMs: nowMs) { db, pending in
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_configs (device_id, running_json, running_at_ms) VALUES (?1, ?2, ?3)
                    ON CONFLICT(device_id) DO UPDATE SET running_json = ?2, running_at_ms = ?3
                    """
            ).execute(
                arguments: [deviceID, report.serialized, nowMs]
            )
            try history(db, deviceID, "boot_report", report, nil, nowMs, pending: pending)
        }
    }

    public func configHistory(deviceID: String, before: Int64?, limit: Int) async throws -> [ConfigHistoryRow] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT * FROM config_history WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
                ),
                arguments: [deviceID, before ?? Int64.max, limit]
            ).map { row in
                var entry = ConfigHistoryRow(
                    event: row["event"],
                    config: JSONValue(storedText: row["config_json"]),
                    detail: row["detail"],
                    createdAtMs: row["created_at_ms"]
                )
                entry.id = row["id"]
                return entry
            }
        }
    }

    public func withdrawPending(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            guard let pending = try Self.loadState(db, deviceID).pending else { return false }
            try db.cachedStatement(
                sql: "UPDATE device_configs SET pending_json = NULL, pending_delivered_at_ms = NULL WHERE device_id = ?"
            ).execute(
                arguments: [deviceID]
            )
            try history(db, deviceID, "withdrawn", pending, nil, nowMs)
            return true
        }
    }
}
