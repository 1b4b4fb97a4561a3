import EcoWattStorage
import Foundation
import GRDB

extension SQLiteDeviceStore: OTAStore {
    public func createDeployment(_ deployment: OTADeployment) async throws -> OTADeployment {
        try await writer.write { db in
            for deviceID in Set(deployment.deviceIDs ?? []) {
                try Retention.adopt(db, deviceID: deviceID, nowMs: deployment.createdAtMs)
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO ota_deployments (version, all_devices, status, max_attempts, notes, created_at_ms)
                    VALUES (?, ?, 'active', ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    deployment.version, deployment.deviceIDs == nil, deployment.maxAttempts, deployment.notes,
                    deployment.createdAtMs,
                ]
            )
            var stored = deployment
            stored.id = db.lastInsertedRowID
            stored.status = "active"
            for deviceID in Set(deployment.deviceIDs ?? []) {
                try db.cachedStatement(
                    sql: "INSERT INTO ota_deployment_devices (deployment_id, device_id) VALUES (?, ?)"
                ).execute(
                    arguments: [stored.id, deviceID]
                )
            }
            return stored
        }
    }

    static func deployment(_ db: Database, row: Row) throws -> OTADeployment {
        let id: Int64 = row["id"]
        let all: Bool = row["all_devices"]
        return OTADeployment(
            id: id,
            version: row["version"],
            deviceIDs: all
                ? nil
                : try String.fetchAll(
                    db.cachedStatement(
                        sql: "SELECT device_id FROM ota_deployment_devices WHERE deployment_id = ? ORDER BY device_id"
                    ),
                    arguments: [id]
                ),
            status: row["status"],
            maxAttempts: row["max_attempts"],
            notes: row["notes"],
            createdAtMs: row["created_at_ms"],
            cancelledAtMs: row["cancelled_at_ms"]
        )
    }

    public func deployments(status: String?, before: Int64?, limit: Int) async throws -> [OTADeployment] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT * FROM ota_deployments WHERE (?1 IS NULL OR status = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ),
                arguments: [status, before ?? Int64.max, limit]
            )
            .map { try Self.deployment(db, row: $0) }
        }
    }

    public func cancelDeployment(id: Int64, nowMs: Int64) async throws -> OTADeployment? {
        try await writer.write { db in
            try db.cachedStatement(
                sql: "UPDATE ota_deployments SET status = 'cancelled', cancelled_at_ms = ? WHERE id = ? AND status = 'active'"
            ).execute(
                arguments: [nowMs, id]
            )
            return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM ota_deployments WHERE id = ?"), arguments: [id])
                .map { try Self.deployment(db, row: $0) }
        }
    }

    public func attempts(deviceID: String, version: String, sinceMs: Int64) async throws -> (failed: Int, versionMismatch: Bool) {
        try await database.pool.read { db in
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT COALESCE(SUM(outcome IN ('failed', 'rolled_back') AND started_at_ms >= ?), 0) AS failed,
                          COALESCE(MAX(outcome = 'version_mismatch'), 0) AS mismatch
                        FROM ota_sessions WHERE device_id = ? AND version = ?
                        """
                ),
                arguments: [sinceMs, deviceID, version]
            )
            return (row?["failed"] ?? 0, row?["mismatch"] ?? false)
        }
    }

    public func startSession(_ session: OTASession) async throws -> [String] {
        let retention = retention
        return try await admittingWrite(session.deviceID, nowMs: session.startedAtMs) { db, pending in
            let replaced = try String.fetchAll(
                db.cachedStatement(
                    sql: "SELECT session_id FROM ota_sessions WHERE device_id = ? AND outcome IS NULL"
                ),
                arguments: [session.deviceID]
            )
            try db.cachedStatement(
                sql: """
                    UPDATE ota_sessions SET outcome = 'replaced', ended_at_ms = ?1, updated_at_ms = ?1,
                      message = 'replaced by a new initiate' WHERE device_id = ?2 AND outcome IS NULL
                    """
            ).execute(
                arguments: [session.startedAtMs, session.deviceID]
            )
            try db.cachedStatement(
                sql: """
                    INSERT INTO ota_sessions (session_id, device_id, version, deployment_id, from_version, total_chunks,
                      phase, progress, started_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
                    """
            ).execute(
                arguments: [
                    session.sessionID, session.deviceID, session.version, session.deploymentID, session.fromVersion,
                    session.totalChunks, session.phase, session.startedAtMs, session.startedAtMs,
                ]
            )
            try Retention.added(db, .otaSessions, deviceID: session.deviceID, pending: pending, policy: retention)
            // Progress the device sent just before initiating ("Starting firmware download...") belongs to this session
            // (found through the partial index of events without a session: a few per device, never a scan).
            try db.cachedStatement(
                sql: """
                    UPDATE ota_events SET session_id = ? WHERE device_id = ? AND session_id IS NULL AND received_at_ms >= ?
                    """
            ).execute(
                arguments: [session.sessionID, session.deviceID, session.startedAtMs - 120_000]
            )
            return replaced
        }
    }

    public func activeSessions() async throws -> [OTASession] {
        try await database.pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT rowid, * FROM ota_sessions WHERE outcome IS NULL")).map(OTASession.init(row:))
        }
    }

    public func recordProgress(_ event: OTAEvent, outcome: OTAOutcome?) async throws {
        let retention = retention
        try await admittingWrite(event.deviceID, nowMs: event.receivedAtMs) { db, pending in
            try db.cachedStatement(
                sql: """
                    INSERT INTO ota_events (session_id, device_id, phase, progress, message, device_time_s, received_at_ms,
                      device_time_invalid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    event.sessionID, event.deviceID, event.phase, event.progress, event.message, event.deviceTimeS,
                    event.receivedAtMs, event.deviceTimeInvalid,
                ]
            )
            try Retention.added(db, .otaEvents, deviceID: event.deviceID, sessionID: event.sessionID, pending: pending, policy: retention)
            guard let sessionID = event.sessionID else { return }
            try db.cachedStatement(
                sql: """
                    UPDATE ota_sessions SET phase = ?1, progress = COALESCE(?2, progress), updated_at_ms = ?3,
                      outcome = ?4, ended_at_ms = CASE WHEN ?4 IS NULL THEN NULL ELSE ?3 END,
                      message = COALESCE(?5, message)
                    WHERE session_id = ?6 AND outcome IS NULL
                    """
            ).execute(
                arguments: [event.phase, event.progress, event.receivedAtMs, outcome?.rawValue, event.message, sessionID]
            )
        }
    }

    public func saveCounters(_ counters: [String: OTAChunkCounters]) async throws {
        try await writer.write { db in
            for (sessionID, counter) in counters {
                try db.cachedStatement(
                    sql: """
                        UPDATE ota_sessions SET chunks_served = chunks_served + ?, bytes_served = bytes_served + ?, last_chunk = ?,
                          updated_at_ms = MAX(updated_at_ms, ?) WHERE session_id = ?
                        """
                ).execute(
                    arguments: [counter.chunksServed, counter.bytesServed, counter.lastChunk, counter.updatedAtMs, sessionID]
                )
            }
        }
    }

    public func endSession(
        _ sessionID: String,
        outcome: OTAOutcome,
        message: String?,
        reportedVersion: String?,
        reportedStatus: String?,
        nowMs: Int64
    ) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE ota_sessions SET outcome = ?1, message = COALESCE(?2, message), reported_version = ?3,
                      reported_status = ?4, ended_at_ms = ?5, updated_at_ms = ?5 WHERE session_id = ?6 AND outcome IS NULL
                    """
            ).execute(
                arguments: [outcome.rawValue, message, reportedVersion, reportedStatus, nowMs, sessionID]
            )
            return db.changesCount > 0
        }
    }

    public func session(_ sessionID: String) async throws -> OTASession? {
        try await database.pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT rowid, * FROM ota_sessions WHERE session_id = ?"), arguments: [sessionID])
                .map(OTASession.init(row:))
        }
    }

    public func sessions(deviceID: String, outcome: String?, before: OTASessionCursor?, limit: Int) async throws -> [OTASession] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT rowid, * FROM ota_sessions WHERE device_id = ?1
                          AND (?2 IS NULL OR (?2 = 'active' AND outcome IS NULL) OR outcome = ?2)
                          AND (started_at_ms < ?3 OR (started_at_ms = ?3 AND rowid < ?4))
                        ORDER BY started_at_ms DESC, rowid DESC LIMIT ?5
                        """
                ),
                arguments: [deviceID, outcome, before?.startedAtMs ?? Int64.max, before?.sequence ?? Int64.max, limit]
            ).map(OTASession.init(row:))
        }
    }

    public func events(sessionID: String, limit: Int) async throws -> [OTAEvent] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT * FROM ota_events WHERE session_id = ? ORDER BY id LIMIT ?"
                ),
                arguments: [sessionID, limit]
            ).map { row in
                var event = OTAEvent(
                    sessionID: row["session_id"],
                    deviceID: row["device_id"],
                    phase: row["phase"],
                    progress: row["progress"],
                    message: row["message"],
                    deviceTimeS: row["device_time_s"],
                    receivedAtMs: row["received_at_ms"]
                )
                event.deviceTimeInvalid = row["device_time_invalid"]
                return event
            }
        }
    }

    public func otaCounts() async throws -> OTACounts {
        try await database.pool.read { db in
            var counts = OTACounts()
            for row in try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT COALESCE(outcome, 'active') AS outcome, COUNT(*) AS n FROM ota_sessions GROUP BY 1"
                )
            ) {
                counts.sessionsByOutcome[row["outcome"]] = row["n"]
            }
            counts.activeSessions = counts.sessionsByOutcome["active"] ?? 0
            if let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: "SELECT COALESCE(SUM(chunks_served), 0) AS c, COALESCE(SUM(bytes_served), 0) AS b FROM ota_sessions"
                )
            ) {
                counts.chunksServed = row["c"]
                counts.bytesServed = row["b"]
            }
            return counts
        }
    }

    public func setFirmwareVersion(deviceID: String, version: String) async throws {
        // Most calls change nothing (every check and every boot report the running version): read first, so that an
        // anonymous `/ota/check` costs no write transaction.
        // The async read (a `Row` is not Sendable: returning one would pick GRDB's blocking read, which held a
        // cooperative thread while it waited for a reader; with both of a 2-core machine's threads blocked there, the
        // readers' releases never ran and the whole server stopped, accept loop included, under 1 000 devices).
        let current: String?? = try await database.pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT firmware_version FROM devices WHERE device_id = ?"), arguments: [deviceID])
                .map { row -> String? in row["firmware_version"] }
        }
        guard let current, current != version else { return }
        try await writer.write { db in
            try db.cachedStatement(
                sql: "UPDATE devices SET firmware_version = ? WHERE device_id = ? AND firmware_version IS NOT ?"
            ).execute(
                arguments: [version, deviceID, version]
            )
        }
    }

    public func expireSessions(idleBeforeMs: Int64, nowMs: Int64) async throws -> [(sessionID: String, deviceID: String)] {
        // Read first (the partial index `ota_sessions_active`): no write transaction while nothing is idle.
        let idle = try await database.pool.read { db in
            try Bool.fetchOne(
                db.cachedStatement(
                    sql: "SELECT EXISTS (SELECT 1 FROM ota_sessions WHERE outcome IS NULL AND updated_at_ms < ?)"
                ),
                arguments: [idleBeforeMs]
            ) ?? false
        }
        guard idle else { return [] }
        return try await writer.write { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT session_id, device_id FROM ota_sessions WHERE outcome IS NULL AND updated_at_ms < ?"
                ),
                arguments: [idleBeforeMs]
            )
            try db.cachedStatement(
                sql: """
                    UPDATE ota_sessions SET outcome = 'expired', ended_at_ms = ?1, updated_at_ms = ?1,
                      message = 'no chunk or progress for too long' WHERE outcome IS NULL AND updated_at_ms < ?2
                    """
            ).execute(
                arguments: [nowMs, idleBeforeMs]
            )
            return rows.map { ($0["session_id"], $0["device_id"]) }
        }
    }
}
