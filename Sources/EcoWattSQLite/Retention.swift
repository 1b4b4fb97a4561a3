import EcoWattStorage
import GRDB
import Synchronization

/// The bookkeeping behind ``RetentionPolicy``, run inside the writer's transactions: a row count per bounded table
/// (kept in the `retention` table, so no `COUNT(*)` is ever needed), per-device trimming after every insert, and
/// oldest-first trimming when a table exceeds its total.
enum Retention {
    static let pendingDevices = "pending_devices"

    /// Makes sure `deviceID` has a registry row; an unknown id becomes pending (evicting the oldest pending ids when the
    /// set is full). Returns whether the device is pending and which ids were evicted.
    static func admit(
        _ db: Database,
        deviceID: String,
        nowMs: Int64,
        policy: RetentionPolicy
    ) throws -> (pending: Bool, created: Bool, evicted: [String]) {
        // The device is known almost always: one lookup, and the insert only for a new id (in the writer's
        // transaction, so nothing comes between them).
        if let admission = try String.fetchOne(
            db.cachedStatement(sql: "SELECT admission FROM devices WHERE device_id = ?"),
            arguments: [deviceID]
        ) {
            return (admission == "pending", false, [])
        }
        try db.cachedStatement(
            sql: "INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, admission) VALUES (?1, ?2, ?2, 'pending')"
        ).execute(arguments: [deviceID, nowMs])
        let pending = try adjust(db, pendingDevices, by: 1)
        guard pending > policy.maxPendingDevices else { return (true, true, []) }
        let evicted = try String.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT device_id FROM devices WHERE admission = 'pending' AND device_id != ?
                    ORDER BY first_seen_ms, device_id LIMIT ?
                    """
            ),
            arguments: [deviceID, pending - policy.maxPendingDevices]
        )
        for id in evicted { try evict(db, deviceID: id) }
        return (true, true, evicted)
    }

    /// An operator created or targeted the device: it is no longer pending and caps never drop it.
    static func adopt(_ db: Database, deviceID: String, nowMs: Int64) throws {
        let was = try String.fetchOne(db.cachedStatement(sql: "SELECT admission FROM devices WHERE device_id = ?"), arguments: [deviceID])
        if was == "pending" { try adjust(db, pendingDevices, by: -1) }
        try db.cachedStatement(
            sql: """
                INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, admission) VALUES (?1, ?2, ?2, 'operator')
                ON CONFLICT(device_id) DO UPDATE SET admission = 'operator' WHERE admission = 'pending'
                """
        ).execute(
            arguments: [deviceID, nowMs]
        )
    }

    /// The device leaves the pending set (its first verified upload, or its deletion).
    static func leavePending(_ db: Database, deviceID: String) throws {
        let was = try String.fetchOne(
            db.cachedStatement(sql: "SELECT admission FROM devices WHERE device_id = ?"),
            arguments: [deviceID]
        )
        if was == "pending" { try adjust(db, pendingDevices, by: -1) }
    }

    /// Drops a pending device and everything it stored.
    static func evict(_ db: Database, deviceID: String) throws {
        for table in BoundedTable.allCases {
            try db.cachedStatement(sql: "DELETE FROM \(table.rawValue) WHERE device_id = ?").execute(arguments: [deviceID])
            try removed(db, table, count: db.changesCount, dropped: true)
        }
        try db.cachedStatement(sql: "DELETE FROM device_configs WHERE device_id = ?").execute(arguments: [deviceID])
        try db.cachedStatement(sql: "DELETE FROM devices WHERE device_id = ? AND admission = 'pending'").execute(arguments: [deviceID])
        if db.changesCount > 0 {
            try adjust(db, pendingDevices, by: -1)
            try db.cachedStatement(sql: "UPDATE retention SET dropped = dropped + 1 WHERE name = ?").execute(arguments: [pendingDevices])
        }
    }

    /// One row was added to `table` for `deviceID` (and `sessionID` for OTA events): trims the device's (or session's)
    /// oldest rows beyond its cap, then the table's oldest beyond its total.
    static func added(
        _ db: Database,
        _ table: BoundedTable,
        deviceID: String,
        sessionID: String? = nil,
        pending: Bool,
        policy: RetentionPolicy
    ) throws {
        var rows = try adjust(db, table.rawValue, by: 1)
        let cap = policy.cap(table)
        let perDevice = pending ? min(cap.perDevice, policy.pendingRowsPerDevice) : cap.perDevice
        switch table {
        case .configHistory, .faultEvents, .powerReports, .heldMessages:
            try db.cachedStatement(
                sql: """
                    DELETE FROM \(table.rawValue) WHERE device_id = ?1 AND id <= (SELECT id FROM \(table.rawValue)
                      WHERE device_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)
                    """
            ).execute(arguments: [deviceID, perDevice])
        case .otaEvents:
            if let sessionID {
                try db.cachedStatement(
                    sql: """
                        DELETE FROM ota_events WHERE session_id = ?1 AND id <= (SELECT id FROM ota_events
                          WHERE session_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)
                        """
                ).execute(arguments: [sessionID, cap.perDevice])
            } else {
                // Events without a session ("Starting firmware download..." before an initiate): a few per device.
                try db.cachedStatement(
                    sql: """
                        DELETE FROM ota_events WHERE device_id = ?1 AND session_id IS NULL AND id <= (SELECT id FROM ota_events
                          WHERE device_id = ?1 AND session_id IS NULL ORDER BY id DESC LIMIT 1 OFFSET ?2)
                        """
                ).execute(arguments: [deviceID, policy.pendingRowsPerDevice])
            }
        case .otaSessions:
            let ended = try String.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT session_id FROM ota_sessions WHERE device_id = ? AND outcome IS NOT NULL
                        ORDER BY started_at_ms DESC, rowid DESC LIMIT -1 OFFSET ?
                        """
                ),
                arguments: [deviceID, perDevice]
            )
            try deleteSessions(db, ended)
            return try trimTotal(db, table, cap.total, rows: nil)
        }
        rows = try removed(db, table, count: db.changesCount, dropped: true) ?? rows
        try trimTotal(db, table, cap.total, rows: rows)
    }

    /// Oldest rows of `table` beyond `total` (for sessions: ended ones only); `rows`: its count when the caller has it.
    private static func trimTotal(_ db: Database, _ table: BoundedTable, _ total: Int, rows known: Int?) throws {
        let rows = try known ?? count(db, table.rawValue)
        guard rows > total else { return }
        // A tenth of the cap at once, so that a table at its cap is not trimmed on every insert.
        let excess = rows - total + max(1, total / 10)
        if table == .otaSessions {
            let oldest = try String.fetchAll(
                db.cachedStatement(
                    sql: "SELECT session_id FROM ota_sessions WHERE outcome IS NOT NULL ORDER BY rowid LIMIT ?"
                ),
                arguments: [excess]
            )
            try deleteSessions(db, oldest)
        } else {
            try db.cachedStatement(
                sql: "DELETE FROM \(table.rawValue) WHERE id IN (SELECT id FROM \(table.rawValue) ORDER BY id LIMIT ?)"
            ).execute(
                arguments: [excess]
            )
            try removed(db, table, count: db.changesCount, dropped: true)
        }
    }

    /// Deletes ended sessions and their events.
    private static func deleteSessions(_ db: Database, _ sessionIDs: [String]) throws {
        guard !sessionIDs.isEmpty else { return }
        for sessionID in sessionIDs {
            try db.cachedStatement(sql: "DELETE FROM ota_events WHERE session_id = ?").execute(arguments: [sessionID])
            try removed(db, .otaEvents, count: db.changesCount, dropped: true)
            try db.cachedStatement(sql: "DELETE FROM ota_sessions WHERE session_id = ?").execute(arguments: [sessionID])
            try removed(db, .otaSessions, count: db.changesCount, dropped: true)
        }
    }

    /// Bookkeeping for rows deleted from `table` (`dropped`: by a cap, rather than by an operator). Returns the table's
    /// rows now, `nil` when nothing was deleted.
    @discardableResult
    static func removed(_ db: Database, _ table: BoundedTable, count: Int, dropped: Bool) throws -> Int? {
        guard count > 0 else { return nil }
        return try Int.fetchOne(
            db.cachedStatement(
                sql: "UPDATE retention SET rows = max(0, rows - ?2), dropped = dropped + ?3 WHERE name = ?1 RETURNING rows"
            ),
            arguments: [table.rawValue, count, dropped ? count : 0]
        ) ?? 0
    }

    /// Adds `delta` to the count `name`; returns the new count. (One statement with `RETURNING`: this runs for every
    /// bounded insert, and an update followed by a read of the count was two.)
    @discardableResult
    private static func adjust(_ db: Database, _ name: String, by delta: Int) throws -> Int {
        try Int.fetchOne(
            db.cachedStatement(sql: "UPDATE retention SET rows = max(0, rows + ?2) WHERE name = ?1 RETURNING rows"),
            arguments: [name, delta]
        ) ?? 0
    }

    private static func count(_ db: Database, _ name: String) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT rows FROM retention WHERE name = ?"), arguments: [name]) ?? 0
    }

    static func counts(_ db: Database) throws -> RetentionCounts {
        var counts = RetentionCounts()
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT name, rows, dropped FROM retention")) {
            counts.rows[row["name"]] = row["rows"]
            counts.dropped[row["name"]] = row["dropped"]
        }
        return counts
    }

    /// Recounts every bounded table and the pending devices (at start: the counters are exact again even if an earlier
    /// version or a crash left them off).
    static func recount(_ db: Database, tables: [BoundedTable]) throws {
        for table in tables {
            try db.cachedStatement(
                sql: "UPDATE retention SET rows = (SELECT COUNT(*) FROM \(table.rawValue)) WHERE name = ?"
            ).execute(
                arguments: [table.rawValue]
            )
        }
        try db.cachedStatement(
            sql: "UPDATE retention SET rows = (SELECT COUNT(*) FROM devices WHERE admission = 'pending') WHERE name = ?"
        ).execute(
            arguments: [pendingDevices]
        )
    }
}
