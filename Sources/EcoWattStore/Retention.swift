import GRDB
import Synchronization

/// Where the store reports (after the commit) ids that got a registry row from a device request, and pending ids the
/// caps dropped, so that in-memory state and files follow.
public final class RegistryEvents: Sendable {
    public enum Event: Sendable {
        /// New registry rows (pending devices).
        case admitted([String])
        /// Pending devices dropped with everything they stored.
        case evicted([String])
    }

    private let listeners = Mutex<[@Sendable (Event) -> Void]>([])

    public init() {}

    /// Calls `listener` with every later event.
    public func observe(_ listener: @escaping @Sendable (Event) -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    func report(_ event: Event) {
        for listener in listeners.withLock({ $0 }) { listener(event) }
    }
}

/// A cap on one table: rows kept per device (per session for OTA events) and rows kept in all.
public struct RowCap: Sendable, Equatable {
    public var perDevice: Int
    public var total: Int

    public init(perDevice: Int, total: Int) {
        self.perDevice = perDevice
        self.total = total
    }
}

/// Caps on everything an unauthenticated device request can make the database keep (issue 13).
///
/// Device routes other than the upload carry no credential, so every row they add is bounded per device and in total,
/// the oldest dropped first and counted. Ids that never made a verified upload and that no operator created are
/// *pending*: they live in one bounded set, keep at most ``pendingRowsPerDevice`` rows per table, and when the set is
/// full the oldest pending id is dropped with everything it stored. Caps never drop a verified or operator-created
/// device, nor an active OTA session. Defaults are sized for a fleet of 1 000 000 devices.
public struct RetentionPolicy: Sendable, Equatable {
    /// Most pending device ids.
    public var maxPendingDevices = 100_000
    /// Rows a pending device keeps per table.
    public var pendingRowsPerDevice = 5
    /// Configuration events (requested, delivered, applied, boot reports).
    public var configHistory = RowCap(perDevice: 50, total: 2_000_000)
    /// Fault-recovery events (spec §6.2).
    public var faultEvents = RowCap(perDevice: 200, total: 5_000_000)
    /// Energy reports (spec §6.1; one per 300 s by default, so 300 is about a day).
    public var powerReports = RowCap(perDevice: 300, total: 5_000_000)
    /// OTA progress events: per session (a 1 MiB download reports about 60 times), and in all.
    public var otaEvents = RowCap(perDevice: 300, total: 2_000_000)
    /// Ended OTA sessions per device and in all (active sessions are never dropped).
    public var otaSessions = RowCap(perDevice: 20, total: 1_000_000)
    /// Once-per-boot messages from an unbound address, held until a verified upload confirms them.
    public var heldMessages = RowCap(perDevice: 6, total: 200_000)

    public init() {}

    func cap(_ table: BoundedTable) -> RowCap {
        switch table {
        case .configHistory: configHistory
        case .faultEvents: faultEvents
        case .powerReports: powerReports
        case .otaEvents: otaEvents
        case .otaSessions: otaSessions
        case .heldMessages: heldMessages
        }
    }
}

/// Tables whose rows device requests add.
public enum BoundedTable: String, CaseIterable, Sendable {
    case configHistory = "config_history"
    case faultEvents = "fault_events"
    case powerReports = "power_reports"
    case otaEvents = "ota_events"
    case otaSessions = "ota_sessions"
    case heldMessages = "held_messages"
}

/// Rows kept and dropped per bounded table (and pending devices), for `/metrics` and the operator.
public struct RetentionCounts: Sendable, Equatable {
    /// Keyed by table name, plus `pending_devices`.
    public var rows: [String: Int] = [:]
    public var dropped: [String: Int] = [:]

    public init() {}
}

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
        try db.cachedStatement(
            sql: """
                INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, admission) VALUES (?1, ?2, ?2, 'pending')
                ON CONFLICT(device_id) DO NOTHING
                """
        ).execute(arguments: [deviceID, nowMs])
        guard db.changesCount > 0 else {
            let admission = try String.fetchOne(
                db.cachedStatement(sql: "SELECT admission FROM devices WHERE device_id = ?"),
                arguments: [deviceID]
            )
            return (admission == "pending", false, [])
        }
        let pending = try adjust(db, pendingDevices, by: 1)
        guard pending > policy.maxPendingDevices else { return (true, true, []) }
        let evicted = try String.fetchAll(
            db,
            sql: """
                SELECT device_id FROM devices WHERE admission = 'pending' AND device_id != ?
                ORDER BY first_seen_ms, device_id LIMIT ?
                """,
            arguments: [deviceID, pending - policy.maxPendingDevices]
        )
        for id in evicted { try evict(db, deviceID: id) }
        return (true, true, evicted)
    }

    /// An operator created or targeted the device: it is no longer pending and caps never drop it.
    static func adopt(_ db: Database, deviceID: String, nowMs: Int64) throws {
        let was = try String.fetchOne(db, sql: "SELECT admission FROM devices WHERE device_id = ?", arguments: [deviceID])
        if was == "pending" { try adjust(db, pendingDevices, by: -1) }
        try db.execute(
            sql: """
                INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, admission) VALUES (?1, ?2, ?2, 'operator')
                ON CONFLICT(device_id) DO UPDATE SET admission = 'operator' WHERE admission = 'pending'
                """,
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
            try db.execute(sql: "DELETE FROM \(table.rawValue) WHERE device_id = ?", arguments: [deviceID])
            try removed(db, table, count: db.changesCount, dropped: true)
        }
        try db.execute(sql: "DELETE FROM device_configs WHERE device_id = ?", arguments: [deviceID])
        try db.execute(sql: "DELETE FROM devices WHERE device_id = ? AND admission = 'pending'", arguments: [deviceID])
        if db.changesCount > 0 {
            try adjust(db, pendingDevices, by: -1)
            try db.execute(sql: "UPDATE retention SET dropped = dropped + 1 WHERE name = ?", arguments: [pendingDevices])
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
        try adjust(db, table.rawValue, by: 1)
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
            return try trimTotal(db, table, cap.total)
        }
        try removed(db, table, count: db.changesCount, dropped: true)
        try trimTotal(db, table, cap.total)
    }

    /// Oldest rows of `table` beyond `total` (for sessions: ended ones only).
    private static func trimTotal(_ db: Database, _ table: BoundedTable, _ total: Int) throws {
        let rows = try count(db, table.rawValue)
        guard rows > total else { return }
        // A tenth of the cap at once, so that a table at its cap is not trimmed on every insert.
        let excess = rows - total + max(1, total / 10)
        if table == .otaSessions {
            let oldest = try String.fetchAll(
                db,
                sql: "SELECT session_id FROM ota_sessions WHERE outcome IS NOT NULL ORDER BY rowid LIMIT ?",
                arguments: [excess]
            )
            try deleteSessions(db, oldest)
        } else {
            try db.execute(
                sql: "DELETE FROM \(table.rawValue) WHERE id IN (SELECT id FROM \(table.rawValue) ORDER BY id LIMIT ?)",
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

    /// Bookkeeping for rows deleted from `table` (`dropped`: by a cap, rather than by an operator).
    static func removed(_ db: Database, _ table: BoundedTable, count: Int, dropped: Bool) throws {
        guard count > 0 else { return }
        try db.cachedStatement(
            sql: "UPDATE retention SET rows = max(0, rows - ?2), dropped = dropped + ?3 WHERE name = ?1"
        ).execute(arguments: [table.rawValue, count, dropped ? count : 0])
    }

    @discardableResult
    private static func adjust(_ db: Database, _ name: String, by delta: Int) throws -> Int {
        try db.cachedStatement(sql: "UPDATE retention SET rows = max(0, rows + ?2) WHERE name = ?1").execute(arguments: [name, delta])
        return try count(db, name)
    }

    private static func count(_ db: Database, _ name: String) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT rows FROM retention WHERE name = ?"), arguments: [name]) ?? 0
    }

    static func counts(_ db: Database) throws -> RetentionCounts {
        var counts = RetentionCounts()
        for row in try Row.fetchAll(db, sql: "SELECT name, rows, dropped FROM retention") {
            counts.rows[row["name"]] = row["rows"]
            counts.dropped[row["name"]] = row["dropped"]
        }
        return counts
    }

    /// Recounts every bounded table and the pending devices (at start: the counters are exact again even if an earlier
    /// version or a crash left them off).
    static func recount(_ db: Database, tables: [BoundedTable]) throws {
        for table in tables {
            try db.execute(
                sql: "UPDATE retention SET rows = (SELECT COUNT(*) FROM \(table.rawValue)) WHERE name = ?",
                arguments: [table.rawValue]
            )
        }
        try db.execute(
            sql: "UPDATE retention SET rows = (SELECT COUNT(*) FROM devices WHERE admission = 'pending') WHERE name = ?",
            arguments: [pendingDevices]
        )
    }
}
