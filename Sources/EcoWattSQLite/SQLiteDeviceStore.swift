import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// ``DeviceRegistryStore`` and ``CommandStore`` on SQLite; every write goes through the ``GroupCommitWriter``.
public struct SQLiteDeviceStore: DeviceRegistryStore, CommandStore {
    public let database: EcoWattDatabase
    public let writer: GroupCommitWriter
    public let retention: RetentionPolicy
    /// Told (after the commit) which ids got a registry row and which pending devices the caps dropped.
    public let events: RegistryEvents

    public init(
        database: EcoWattDatabase,
        writer: GroupCommitWriter,
        retention: RetentionPolicy = RetentionPolicy(),
        events: RegistryEvents = RegistryEvents()
    ) {
        self.database = database
        self.writer = writer
        self.retention = retention
        self.events = events
    }

    /// Runs `body` in the next group transaction after admitting `deviceID` (see ``admit(deviceID:nowMs:)``); `body`
    /// learns whether the device is pending. Evictions are reported once the transaction committed.
    func admittingWrite<T: Sendable>(
        _ deviceID: String,
        nowMs: Int64,
        _ body: @escaping @Sendable (Database, _ pending: Bool) throws -> T
    ) async throws -> T {
        let retention = retention
        let (value, created, evicted) = try await writer.write { db in
            let admission = try Retention.admit(db, deviceID: deviceID, nowMs: nowMs, policy: retention)
            return (try body(db, admission.pending), admission.created, admission.evicted)
        }
        if !evicted.isEmpty { events.report(.evicted(evicted)) }
        if created { events.report(.admitted([deviceID])) }
        return value
    }

    // MARK: Registry

    public func admit(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await admittingWrite(deviceID, nowMs: nowMs) { _, pending in pending }
    }

    public func knownDevices() async throws -> [String: Int64] {
        try await database.pool.read { db in
            var devices = [String: Int64]()
            let rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT device_id, last_seen_ms FROM devices"))
            while let row = try rows.next() { devices[row[0]] = row[1] }
            return devices
        }
    }

    public func retentionCounts() async throws -> RetentionCounts {
        try await database.pool.read { db in try Retention.counts(db) }
    }

    public func register(deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool {
        try await admittingWrite(deviceID, nowMs: nowMs) { db, _ in
            let existed =
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT registered_at_ms IS NOT NULL FROM devices WHERE device_id = ?"),
                    arguments: [deviceID]
                ) ?? false
            try db.cachedStatement(
                sql: """
                    INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, device_name, location, description,
                      firmware_version, registered_at_ms) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?2)
                    ON CONFLICT(device_id) DO UPDATE SET last_seen_ms = max(devices.last_seen_ms, ?2),
                      device_name = coalesce(?3, devices.device_name), location = coalesce(?4, devices.location),
                      description = coalesce(?5, devices.description),
                      firmware_version = coalesce(?6, devices.firmware_version),
                      registered_at_ms = coalesce(devices.registered_at_ms, ?2)
                    """
            ).execute(
                arguments: [deviceID, nowMs, fields.deviceName, fields.location, fields.description, fields.firmwareVersion]
            )
            return !existed
        }
    }

    public func device(_ deviceID: String) async throws -> DeviceRow? {
        try await database.pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM devices WHERE device_id = ?"), arguments: [deviceID]).map(DeviceRow.init)
        }
    }

    public func devices(after: String?, limit: Int, filter: DeviceFilter) async throws -> [DeviceRow] {
        try await database.pool.read { db in
            var sql = "SELECT * FROM devices WHERE device_id > ?"
            var arguments: StatementArguments = [after ?? ""]
            if let version = filter.firmwareVersion {
                sql += " AND firmware_version = ?"
                arguments += [version]
            }
            if let prefix = filter.idPrefix {
                sql += " AND substr(device_id, 1, length(?)) = ?"
                arguments += [prefix, prefix]
            }
            if let admission = filter.admission {
                sql += " AND admission = ?"
                arguments += [admission]
            }
            sql += " ORDER BY device_id LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(DeviceRow.init)
        }
    }

    public func createDevice(_ deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM devices WHERE device_id = ?"), arguments: [deviceID]) == nil else {
                return false
            }
            try Retention.adopt(db, deviceID: deviceID, nowMs: nowMs)
            try db.cachedStatement(
                sql: """
                    UPDATE devices SET device_name = ?2, location = ?3, description = ?4, firmware_version = ?5
                    WHERE device_id = ?1
                    """
            ).execute(
                arguments: [deviceID, fields.deviceName, fields.location, fields.description, fields.firmwareVersion]
            )
            return true
        }
    }

    public func updateDevice(_ deviceID: String, fields: DeviceFields) async throws -> DeviceRow? {
        try await writer.write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM devices WHERE device_id = ?"), arguments: [deviceID]) != nil else {
                return nil
            }
            try Retention.adopt(db, deviceID: deviceID, nowMs: 0)
            try db.cachedStatement(
                sql: """
                    UPDATE devices SET device_name = coalesce(?2, device_name), location = coalesce(?3, location),
                      description = coalesce(?4, description), firmware_version = coalesce(?5, firmware_version)
                    WHERE device_id = ?1
                    """
            ).execute(
                arguments: [deviceID, fields.deviceName, fields.location, fields.description, fields.firmwareVersion]
            )
            return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM devices WHERE device_id = ?"), arguments: [deviceID]).map(DeviceRow.init)
        }
    }

    public func deleteDevice(_ deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT admission, last_nonce FROM devices WHERE device_id = ?"),
                arguments: [deviceID]
            )
            if let nonce = row?["last_nonce"] as Int64? {
                // The tombstone keeps the nonce: a deleted device's old uploads stay replays.
                try db.cachedStatement(
                    sql: """
                        INSERT INTO device_tombstones (device_id, last_nonce, deleted_at_ms) VALUES (?1, ?2, ?3)
                        ON CONFLICT(device_id) DO UPDATE SET last_nonce = max(last_nonce, ?2), deleted_at_ms = ?3
                        """
                ).execute(
                    arguments: [deviceID, nonce, nowMs]
                )
            }
            if row?["admission"] as String? == "pending" { try Retention.leavePending(db, deviceID: deviceID) }
            try db.cachedStatement(sql: "DELETE FROM devices WHERE device_id = ?").execute(arguments: [deviceID])
            let existed = db.changesCount > 0
            try db.cachedStatement(
                sql: "UPDATE commands SET status = 'cancelled', finished_at_ms = ? WHERE device_id = ? AND status = 'pending'"
            ).execute(
                arguments: [nowMs, deviceID]
            )
            return existed
        }
    }

    public func recordLastSeen(_ lastSeen: [String: Int64]) async throws {
        guard !lastSeen.isEmpty else { return }
        try await writer.write { db in
            // Update only: device routes are unauthenticated, so a poll must not create registry rows.
            let statement = try db.cachedStatement(
                sql: "UPDATE devices SET last_seen_ms = max(last_seen_ms, ?2) WHERE device_id = ?1"
            )
            for (device, seen) in lastSeen { try statement.execute(arguments: [device, seen]) }
        }
    }

    // MARK: Commands

    public func queue(_ command: CommandRequest, deviceID: String, nowMs: Int64, maxPending: Int) async throws -> (command: CommandRow, created: Bool)
    {
        let commandID = UUID().uuidString.lowercased()
        return try await writer.write { db in
            try Retention.adopt(db, deviceID: deviceID, nowMs: nowMs)
            if let key = command.idempotencyKey,
                let existing = try Row.fetchOne(
                    db.cachedStatement(
                        sql: "SELECT \(CommandRow.columns) FROM commands WHERE device_id = ? AND idempotency_key = ?"
                    ),
                    arguments: [deviceID, key]
                )
            {
                return (CommandRow(row: existing), false)
            }
            let pending =
                try Int.fetchOne(
                    db.cachedStatement(
                        sql: "SELECT COUNT(*) FROM commands WHERE device_id = ? AND status = 'pending'"
                    ),
                    arguments: [deviceID]
                ) ?? 0
            guard pending < maxPending else { throw CommandStoreError.queueFull(deviceID: deviceID, limit: maxPending) }
            try db.cachedStatement(
                sql: """
                    INSERT INTO commands (command_id, device_id, action, target_register, register_address, value, status,
                      idempotency_key, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    commandID, deviceID, command.action, command.targetRegister, command.registerAddress,
                    command.value, command.idempotencyKey, nowMs, command.expiresAtMs,
                ]
            )
            let row = try Row.fetchOne(
                db.cachedStatement(sql: CommandSQL.byCommandID),
                arguments: [commandID]
            )!
            return (CommandRow(row: row), true)
        }
    }

    public func dispatchNext(deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow? {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE commands SET status = 'expired', finished_at_ms = ?2
                    WHERE device_id = ?1 AND status = 'pending' AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?2
                    """
            ).execute(arguments: [deviceID, nowMs])
            // The oldest pending command, marked dispatched and read back in one statement.
            return try Row.fetchOne(db.cachedStatement(sql: CommandSQL.dispatchNext), arguments: [deviceID, nowMs, address])
                .map(CommandRow.init)
        }
    }

    public func devicesWithPendingCommands() async throws -> [String] {
        try await database.pool.read { db in
            try String.fetchAll(db.cachedStatement(sql: "SELECT DISTINCT device_id FROM commands WHERE status = 'pending'"))
        }
    }

    public func recordResult(_ result: CommandResult, deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow {
        try await writer.write { db in
            guard
                let row = try Row.fetchOne(db.cachedStatement(sql: CommandSQL.resultTarget), arguments: [result.commandID, deviceID])
            else { throw CommandStoreError.notFound(result.commandID) }
            let command = CommandRow(row: row)
            // A late result after a timeout is still the truth about what the device did.
            guard [.dispatched, .timedOut].contains(command.status) else {
                throw CommandStoreError.wrongState(commandID: command.commandID, status: command.status)
            }
            // A result must come from where the command went (a result from elsewhere was not the device's).
            guard CommandRow.dispatchedTo(row).map({ $0 == address }) ?? true else {
                throw CommandStoreError.notFound(result.commandID)
            }
            let status: CommandStatus = result.succeeded ? .completed : .failed
            let arguments: StatementArguments = [
                status.rawValue, nowMs, result.succeeded ? "success" : "failed", result.executedAt, result.resultJSON,
                result.errorMessage, command.commandID,
            ]
            return try CommandRow(row: Row.fetchOne(db.cachedStatement(sql: CommandSQL.recordResult), arguments: arguments)!)
        }
    }

    public func command(_ commandID: String) async throws -> CommandRow? {
        try await database.pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: CommandSQL.byCommandID), arguments: [commandID]).map(
                CommandRow.init
            )
        }
    }

    public func commands(deviceID: String?, status: CommandStatus?, before: Int64?, limit: Int) async throws -> [CommandRow] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT \(CommandRow.columns) FROM commands WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR status = ?2) AND id < ?3
                        ORDER BY id DESC LIMIT ?4
                        """
                ),
                arguments: [deviceID, status?.rawValue, before ?? Int64.max, limit]
            ).map(CommandRow.init)
        }
    }

    public func cancelCommand(_ commandID: String, nowMs: Int64) async throws -> CommandRow {
        try await writer.write { db in
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(sql: CommandSQL.byCommandID),
                    arguments: [commandID]
                )
            else {
                throw CommandStoreError.notFound(commandID)
            }
            var command = CommandRow(row: row)
            guard command.status == .pending else {
                throw CommandStoreError.wrongState(commandID: commandID, status: command.status)
            }
            try db.cachedStatement(
                sql: "UPDATE commands SET status = 'cancelled', finished_at_ms = ? WHERE command_id = ?"
            ).execute(
                arguments: [nowMs, commandID]
            )
            command.status = .cancelled
            command.finishedAtMs = nowMs
            return command
        }
    }

    public func sweepCommands(nowMs: Int64, resultTimeoutMs: Int64) async throws -> (timedOut: [String], expired: [String]) {
        // Read first (through `commands_status_expiry`): an idle fleet costs no write transaction every sweep.
        let due = try await database.pool.read { db in
            try Bool.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM commands WHERE status = 'dispatched' AND dispatched_at_ms <= ?2)
                            OR EXISTS (SELECT 1 FROM commands WHERE status = 'pending' AND expires_at_ms <= ?1)
                        """
                ),
                arguments: [nowMs, nowMs - resultTimeoutMs]
            ) ?? false
        }
        guard due else { return ([], []) }
        return try await writer.write { db in
            let timedOut = try String.fetchAll(
                db.cachedStatement(
                    sql: """
                        UPDATE commands SET status = 'timed_out', finished_at_ms = ?1
                        WHERE status = 'dispatched' AND dispatched_at_ms <= ?2 RETURNING device_id
                        """
                ),
                arguments: [nowMs, nowMs - resultTimeoutMs]
            )
            let expired = try String.fetchAll(
                db.cachedStatement(
                    sql: """
                        UPDATE commands SET status = 'expired', finished_at_ms = ?1
                        WHERE status = 'pending' AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?1 RETURNING device_id
                        """
                ),
                arguments: [nowMs]
            )
            return (timedOut, expired)
        }
    }

    public func commandCounts() async throws -> [CommandStatus: Int] {
        try await database.pool.read { db in
            var counts = [CommandStatus: Int]()
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT status, COUNT(*) AS n FROM commands GROUP BY status")) {
                if let status = CommandStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }
}

/// Command statements that select `CommandRow.columns`, built once (each call would otherwise interpolate the column
/// list into a new string before the statement cache finds it): those of every poll and result, and the read by id.
private enum CommandSQL {
    /// The command ?1.
    static let byCommandID = "SELECT \(CommandRow.columns) FROM commands WHERE command_id = ?"
    /// The oldest pending command of device ?1, marked dispatched at ?2 to address ?3, read back.
    static let dispatchNext = """
        UPDATE commands SET status = 'dispatched', dispatched_at_ms = ?2, dispatched_to = ?3
        WHERE id = (SELECT id FROM commands WHERE device_id = ?1 AND status = 'pending' ORDER BY id LIMIT 1)
        RETURNING \(CommandRow.columns)
        """
    /// The command ?1 of device ?2.
    static let resultTarget = "SELECT \(CommandRow.columns) FROM commands WHERE command_id = ? AND device_id = ?"
    /// A device's result stored, the command read back.
    static let recordResult = """
        UPDATE commands SET status = ?, finished_at_ms = ?, result_status = ?, executed_at = ?, result_json = ?, error_msg = ?
        WHERE command_id = ? RETURNING \(CommandRow.columns)
        """
}
