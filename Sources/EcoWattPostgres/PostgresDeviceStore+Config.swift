import EcoWattProtocol
import EcoWattStorage
import Logging
import PostgresNIO

/// ``ConfigStore`` on PostgreSQL. Every change reads the device's configuration row locked, so the pending and
/// running configuration move one step at a time whichever instance the device or the operator reached.
extension PostgresDeviceStore: ConfigStore {
    static func loadState(_ connection: PostgresConnection, _ logger: Logger, _ deviceID: String, locking: Bool) async throws -> ConfigState {
        let row = try await connection.rows(
            locking
                ? "SELECT * FROM device_configs WHERE device_id = \(deviceID) FOR UPDATE"
                : "SELECT * FROM device_configs WHERE device_id = \(deviceID)",
            logger: logger
        ).first
        return try ConfigState(row)
    }

    /// Appends a history event (bounded per device and in total, see ``RetentionPolicy/configHistory``).
    func history(
        _ connection: PostgresConnection,
        _ logger: Logger,
        _ deviceID: String,
        _ event: String,
        _ config: JSONValue?,
        _ detail: String?,
        _ now: Int64,
        pending: Bool = false
    ) async throws {
        try await connection.execute(
            """
            INSERT INTO config_history (device_id, event, config_json, detail, created_at_ms)
            VALUES (\(deviceID), \(event), \(config?.serialized), \(detail), \(now))
            """,
            logger: logger
        )
        try await PostgresRetention.added(connection, logger, .configHistory, deviceID: deviceID, pending: pending, policy: retention)
    }

    public func configState(deviceID: String) async throws -> ConfigState {
        try ConfigState(try await database.rows("SELECT * FROM device_configs WHERE device_id = \(deviceID)").first)
    }

    public func addPending(deviceID: String, update: JSONValue, nowMs: Int64) async throws -> ConfigState {
        try await writer.write { connection, logger in
            try await PostgresRetention.adopt(connection, logger, deviceID: deviceID, nowMs: nowMs)
            let state = try await Self.loadState(connection, logger, deviceID, locking: true)
            let pending = JSONValue.merge(state.pending ?? .object([]), update)
            try await connection.execute(
                """
                INSERT INTO device_configs (device_id, pending_json, pending_created_at_ms) VALUES (\(deviceID), \(pending.serialized), \(nowMs))
                ON CONFLICT (device_id) DO UPDATE SET pending_json = excluded.pending_json,
                  pending_created_at_ms = excluded.pending_created_at_ms, pending_delivered_at_ms = NULL
                """,
                logger: logger
            )
            try await history(connection, logger, deviceID, "requested", update, nil, nowMs)
            return try await Self.loadState(connection, logger, deviceID, locking: false)
        }
    }

    public func deliverPending(deviceID: String, nowMs: Int64) async throws -> JSONValue? {
        let hasPending =
            try await database.rows(
                "SELECT pending_json IS NOT NULL AS pending FROM device_configs WHERE device_id = \(deviceID)"
            ).first?.value("pending", as: Bool.self) ?? false
        guard hasPending else { return nil }
        return try await writer.write { connection, logger in
            let state = try await Self.loadState(connection, logger, deviceID, locking: true)
            guard let pending = state.pending, case .object(let fields) = pending else { return nil }
            let changes = fields.contains { key, value in !ConfigUpdate.matches(value, state.running[key], key: key) }
            if !changes {
                // The device would change nothing and so sends no acknowledgement (spec §5.3): clear it now.
                try await connection.execute(
                    "UPDATE device_configs SET pending_json = NULL, pending_delivered_at_ms = NULL WHERE device_id = \(deviceID)",
                    logger: logger
                )
                try await history(connection, logger, deviceID, "cleared_noop", pending, "delivered; changes nothing on the device", nowMs)
            } else if state.pendingDeliveredAtMs == nil {
                try await connection.execute(
                    "UPDATE device_configs SET pending_delivered_at_ms = \(nowMs) WHERE device_id = \(deviceID)",
                    logger: logger
                )
                try await history(connection, logger, deviceID, "delivered", pending, nil, nowMs)
            }
            return pending
        }
    }

    public func acknowledge(deviceID: String, ack: JSONValue, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            let state = try await Self.loadState(connection, logger, deviceID, locking: true)
            guard let pending = state.pending, state.pendingDeliveredAtMs != nil else { return false }
            let running = JSONValue.merge(state.running, pending)
            try await connection.execute(
                """
                UPDATE device_configs SET running_json = \(running.serialized), running_at_ms = \(nowMs), pending_json = NULL,
                  pending_delivered_at_ms = NULL WHERE device_id = \(deviceID)
                """,
                logger: logger
            )
            try await history(connection, logger, deviceID, "applied", pending, ack.serialized, nowMs)
            return true
        }
    }

    public func recordRunning(deviceID: String, report: JSONValue, nowMs: Int64) async throws {
        try await admittingWrite(deviceID, nowMs: nowMs) { connection, logger, pending in
            try await connection.execute(
                """
                INSERT INTO device_configs (device_id, running_json, running_at_ms) VALUES (\(deviceID), \(report.serialized), \(nowMs))
                ON CONFLICT (device_id) DO UPDATE SET running_json = excluded.running_json, running_at_ms = excluded.running_at_ms
                """,
                logger: logger
            )
            try await history(connection, logger, deviceID, "boot_report", report, nil, nowMs, pending: pending)
        }
    }

    public func configHistory(deviceID: String, before: Int64?, limit: Int) async throws -> [ConfigHistoryRow] {
        try await database.rows(
            """
            SELECT * FROM config_history WHERE device_id = \(deviceID) AND id < \(before ?? .max) ORDER BY id DESC LIMIT \(max(0, limit))
            """
        ).map { row in
            var entry = ConfigHistoryRow(
                event: try row.value("event"),
                config: JSONValue(storedText: try row.value("config_json")),
                detail: try row.value("detail"),
                createdAtMs: try row.value("created_at_ms")
            )
            entry.id = try row.value("id")
            return entry
        }
    }

    public func withdrawPending(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            guard let pending = try await Self.loadState(connection, logger, deviceID, locking: true).pending else { return false }
            try await connection.execute(
                "UPDATE device_configs SET pending_json = NULL, pending_delivered_at_ms = NULL WHERE device_id = \(deviceID)",
                logger: logger
            )
            try await history(connection, logger, deviceID, "withdrawn", pending, nil, nowMs)
            return true
        }
    }
}

extension ConfigState {
    /// A device's stored configuration (`nil`: none yet).
    init(_ row: PostgresRandomAccessRow?) throws {
        self.init(
            running: JSONValue(storedText: try row?.value("running_json", as: String?.self)) ?? .object([]),
            pending: JSONValue(storedText: try row?.value("pending_json", as: String?.self)),
            pendingCreatedAtMs: try row?.value("pending_created_at_ms"),
            pendingDeliveredAtMs: try row?.value("pending_delivered_at_ms")
        )
    }
}
