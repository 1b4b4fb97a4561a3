import EcoWattStorage
import Logging
import PostgresNIO

/// The pending-device bookkeeping of ``RetentionPolicy`` on PostgreSQL, inside the writer's transactions: ids that
/// anonymous requests make known are *pending*, counted in `retention` (no `count(*)` per request), and the oldest are
/// dropped beyond `maxPendingDevices`. The counter's row is locked by each change, so instances keep one count.
enum PostgresRetention {
    static let pendingDevices = "pending_devices"

    /// Counts pending devices in or out; returns how many there are now.
    @discardableResult
    static func adjustPending(_ connection: PostgresConnection, _ logger: Logger, by delta: Int) async throws -> Int {
        try await adjust(connection, logger, pendingDevices, by: delta)
    }

    /// Makes sure `deviceID` has a registry row; an unknown id becomes pending (dropping the oldest pending ids when the
    /// set is full). Returns whether the device is pending, whether its row is new, and which ids were dropped.
    static func admit(
        _ connection: PostgresConnection,
        _ logger: Logger,
        deviceID: String,
        nowMs: Int64,
        policy: RetentionPolicy
    ) async throws -> (pending: Bool, created: Bool, evicted: [String]) {
        let inserted = try await connection.rows(
            """
            INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, admission) VALUES (\(deviceID), \(nowMs), \(nowMs), 'pending')
            ON CONFLICT (device_id) DO NOTHING RETURNING 1
            """,
            logger: logger
        )
        guard !inserted.isEmpty else {
            let admission = try await connection.rows("SELECT admission FROM devices WHERE device_id = \(deviceID)", logger: logger)
                .first?.value("admission", as: String.self)
            return (admission == "pending", false, [])
        }
        let pending = try await adjustPending(connection, logger, by: 1)
        guard pending > policy.maxPendingDevices else { return (true, true, []) }
        let evicted = try await connection.rows(
            """
            SELECT device_id FROM devices WHERE admission = 'pending' AND device_id != \(deviceID)
            ORDER BY first_seen_ms, device_id LIMIT \(pending - policy.maxPendingDevices)
            """,
            logger: logger
        ).map { try $0.value("device_id", as: String.self) }
        for id in evicted { try await evict(connection, logger, deviceID: id) }
        return (true, true, evicted)
    }

    /// An operator created or targeted the device: it is no longer pending and caps never drop it.
    static func adopt(_ connection: PostgresConnection, _ logger: Logger, deviceID: String, nowMs: Int64) async throws {
        let was = try await connection.rows("SELECT admission FROM devices WHERE device_id = \(deviceID) FOR UPDATE", logger: logger)
            .first?.value("admission", as: String.self)
        if was == "pending" { try await adjustPending(connection, logger, by: -1) }
        try await connection.execute(
            """
            INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, admission) VALUES (\(deviceID), \(nowMs), \(nowMs), 'operator')
            ON CONFLICT (device_id) DO UPDATE SET admission = 'operator' WHERE devices.admission = 'pending'
            """,
            logger: logger
        )
    }

    /// Drops a pending device and everything it stored.
    static func evict(_ connection: PostgresConnection, _ logger: Logger, deviceID: String) async throws {
        for table in BoundedTable.allCases {
            let count = try await connection.rows(
                PostgresQuery(unsafeSQL: "DELETE FROM \(table.rawValue) WHERE device_id = $1 RETURNING 1", binds: .of(deviceID)),
                logger: logger
            ).count
            try await removed(connection, logger, table, count: count, dropped: true)
        }
        try await connection.execute("DELETE FROM device_configs WHERE device_id = \(deviceID)", logger: logger)
        let dropped = try await connection.rows(
            "DELETE FROM devices WHERE device_id = \(deviceID) AND admission = 'pending' RETURNING 1",
            logger: logger
        )
        if !dropped.isEmpty {
            try await adjustPending(connection, logger, by: -1)
            try await connection.execute("UPDATE retention SET dropped = dropped + 1 WHERE name = \(pendingDevices)", logger: logger)
        }
    }

    /// One row was added to `table` for `deviceID` (and `sessionID` for OTA events): trims the device's (or session's)
    /// oldest rows beyond its cap, then the table's oldest beyond its total.
    static func added(
        _ connection: PostgresConnection,
        _ logger: Logger,
        _ table: BoundedTable,
        deviceID: String,
        sessionID: String? = nil,
        pending: Bool,
        policy: RetentionPolicy
    ) async throws {
        try await adjust(connection, logger, table.rawValue, by: 1)
        let cap = policy.cap(table)
        let perDevice = pending ? min(cap.perDevice, policy.pendingRowsPerDevice) : cap.perDevice
        let trimmed: Int
        switch table {
        case .configHistory, .faultEvents, .powerReports, .heldMessages:
            trimmed = try await connection.rows(
                PostgresQuery(
                    unsafeSQL: """
                        DELETE FROM \(table.rawValue) WHERE device_id = $1 AND id <= (SELECT id FROM \(table.rawValue)
                          WHERE device_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2) RETURNING 1
                        """,
                    binds: .of(deviceID, perDevice)
                ),
                logger: logger
            ).count
        case .otaEvents:
            if let sessionID {
                trimmed = try await connection.rows(
                    """
                    DELETE FROM ota_events WHERE session_id = \(sessionID) AND id <= (SELECT id FROM ota_events
                      WHERE session_id = \(sessionID) ORDER BY id DESC LIMIT 1 OFFSET \(cap.perDevice)) RETURNING 1
                    """,
                    logger: logger
                ).count
            } else {
                // Events without a session ("Starting firmware download..." before an initiate): a few per device.
                trimmed = try await connection.rows(
                    """
                    DELETE FROM ota_events WHERE device_id = \(deviceID) AND session_id IS NULL AND id <= (SELECT id FROM ota_events
                      WHERE device_id = \(deviceID) AND session_id IS NULL ORDER BY id DESC LIMIT 1 OFFSET \(policy.pendingRowsPerDevice))
                    RETURNING 1
                    """,
                    logger: logger
                ).count
            }
        case .otaSessions:
            let ended = try await connection.rows(
                """
                SELECT session_id FROM ota_sessions WHERE device_id = \(deviceID) AND outcome IS NOT NULL
                ORDER BY started_at_ms DESC, seq DESC OFFSET \(perDevice)
                """,
                logger: logger
            ).map { try $0.value("session_id", as: String.self) }
            try await deleteSessions(connection, logger, ended)
            return try await trimTotal(connection, logger, table, cap.total)
        }
        try await removed(connection, logger, table, count: trimmed, dropped: true)
        try await trimTotal(connection, logger, table, cap.total)
    }

    /// Oldest rows of `table` beyond `total` (for sessions: ended ones only).
    private static func trimTotal(_ connection: PostgresConnection, _ logger: Logger, _ table: BoundedTable, _ total: Int) async throws {
        let rows = try await count(connection, logger, table.rawValue)
        guard rows > total else { return }
        // A tenth of the cap at once, so that a table at its cap is not trimmed on every insert.
        let excess = rows - total + max(1, total / 10)
        if table == .otaSessions {
            let oldest = try await connection.rows(
                "SELECT session_id FROM ota_sessions WHERE outcome IS NOT NULL ORDER BY seq LIMIT \(excess)",
                logger: logger
            ).map { try $0.value("session_id", as: String.self) }
            try await deleteSessions(connection, logger, oldest)
        } else {
            let count = try await connection.rows(
                PostgresQuery(
                    unsafeSQL: """
                        DELETE FROM \(table.rawValue) WHERE id IN (SELECT id FROM \(table.rawValue) ORDER BY id LIMIT $1) RETURNING 1
                        """,
                    binds: .of(excess)
                ),
                logger: logger
            ).count
            try await removed(connection, logger, table, count: count, dropped: true)
        }
    }

    /// Deletes ended sessions and their events.
    static func deleteSessions(_ connection: PostgresConnection, _ logger: Logger, _ sessionIDs: [String]) async throws {
        guard !sessionIDs.isEmpty else { return }
        let events = try await connection.rows("DELETE FROM ota_events WHERE session_id = ANY(\(sessionIDs)) RETURNING 1", logger: logger)
        try await removed(connection, logger, .otaEvents, count: events.count, dropped: true)
        let sessions = try await connection.rows("DELETE FROM ota_sessions WHERE session_id = ANY(\(sessionIDs)) RETURNING 1", logger: logger)
        try await removed(connection, logger, .otaSessions, count: sessions.count, dropped: true)
    }

    /// Bookkeeping for rows deleted from `table` (`dropped`: by a cap, rather than by an operator).
    static func removed(_ connection: PostgresConnection, _ logger: Logger, _ table: BoundedTable, count: Int, dropped: Bool) async throws {
        guard count > 0 else { return }
        try await connection.execute(
            """
            UPDATE retention SET rows = greatest(0, rows - \(count)), dropped = dropped + \(dropped ? count : 0)
            WHERE name = \(table.rawValue)
            """,
            logger: logger
        )
    }

    /// Moves the row count of `name` by `delta` (never below 0); returns the new count.
    @discardableResult
    private static func adjust(_ connection: PostgresConnection, _ logger: Logger, _ name: String, by delta: Int) async throws -> Int {
        try await connection.rows(
            "UPDATE retention SET rows = greatest(0, rows + \(delta)) WHERE name = \(name) RETURNING rows",
            logger: logger
        ).first?.value("rows", as: Int.self) ?? 0
    }

    private static func count(_ connection: PostgresConnection, _ logger: Logger, _ name: String) async throws -> Int {
        try await connection.rows("SELECT rows FROM retention WHERE name = \(name)", logger: logger).first?.value("rows", as: Int.self) ?? 0
    }
}

extension PostgresBindings {
    /// Binds for a query whose text is built (a table name from ``BoundedTable``, never input).
    static func of(_ values: any PostgresDynamicTypeEncodable...) -> PostgresBindings {
        var binds = PostgresBindings()
        for value in values { binds.append(value) }
        return binds
    }
}
