import EcoWattStorage
import Foundation
import Logging
import PostgresNIO

/// ``OTAStore`` on PostgreSQL: durable OTA sessions every instance serves. A device has at most one open session (a
/// unique partial index); starting one locks the device's row, so two instances taking initiates for one device at
/// once replace one session with the other instead of failing.
extension PostgresDeviceStore: OTAStore {
    public func createDeployment(_ deployment: OTADeployment) async throws -> OTADeployment {
        try await writer.write { connection, logger in
            let devices = Array(Set(deployment.deviceIDs ?? [])).sorted()
            for deviceID in devices { try await PostgresRetention.adopt(connection, logger, deviceID: deviceID, nowMs: deployment.createdAtMs) }
            var stored = deployment
            stored.id =
                try await connection.rows(
                    """
                    INSERT INTO ota_deployments (version, all_devices, status, max_attempts, notes, created_at_ms)
                    VALUES (\(deployment.version), \(deployment.deviceIDs == nil), 'active', \(deployment.maxAttempts),
                      \(deployment.notes), \(deployment.createdAtMs)) RETURNING id
                    """,
                    logger: logger
                ).first?.value("id") ?? 0
            stored.status = "active"
            if !devices.isEmpty {
                try await connection.execute(
                    "INSERT INTO ota_deployment_devices (deployment_id, device_id) SELECT \(stored.id), unnest(\(devices)::text[])",
                    logger: logger
                )
            }
            return stored
        }
    }

    func deployment(_ row: PostgresRandomAccessRow) async throws -> OTADeployment {
        let id: Int64 = try row.value("id")
        let all: Bool = try row.value("all_devices")
        return OTADeployment(
            id: id,
            version: try row.value("version"),
            deviceIDs: all
                ? nil
                : try await database.rows("SELECT device_id FROM ota_deployment_devices WHERE deployment_id = \(id) ORDER BY device_id")
                    .map { try $0.value("device_id") },
            status: try row.value("status"),
            maxAttempts: try row.value("max_attempts"),
            notes: try row.value("notes"),
            createdAtMs: try row.value("created_at_ms"),
            cancelledAtMs: try row.value("cancelled_at_ms")
        )
    }

    public func deployments(status: String?, before: Int64?, limit: Int) async throws -> [OTADeployment] {
        var deployments: [OTADeployment] = []
        for row in try await database.rows(
            """
            SELECT * FROM ota_deployments WHERE (\(status)::text IS NULL OR status = \(status)) AND id < \(before ?? .max)
            ORDER BY id DESC LIMIT \(max(0, limit))
            """
        ) {
            deployments.append(try await deployment(row))
        }
        return deployments
    }

    public func cancelDeployment(id: Int64, nowMs: Int64) async throws -> OTADeployment? {
        try await writer.write { connection, logger in
            try await connection.execute(
                "UPDATE ota_deployments SET status = 'cancelled', cancelled_at_ms = \(nowMs) WHERE id = \(id) AND status = 'active'",
                logger: logger
            )
        }
        guard let row = try await database.rows("SELECT * FROM ota_deployments WHERE id = \(id)").first else { return nil }
        return try await deployment(row)
    }

    public func attempts(deviceID: String, version: String, sinceMs: Int64) async throws -> (failed: Int, versionMismatch: Bool) {
        let row = try await database.rows(
            """
            SELECT count(*) FILTER (WHERE outcome IN ('failed', 'rolled_back') AND started_at_ms >= \(sinceMs)) AS failed,
              coalesce(bool_or(outcome = 'version_mismatch'), false) AS mismatch
            FROM ota_sessions WHERE device_id = \(deviceID) AND version = \(version)
            """
        ).first
        return (try row?.value("failed") ?? 0, try row?.value("mismatch") ?? false)
    }

    public func startSession(_ session: OTASession) async throws -> [String] {
        let retention = retention
        return try await admittingWrite(session.deviceID, nowMs: session.startedAtMs) { connection, logger, pending in
            try await connection.execute("SELECT 1 FROM devices WHERE device_id = \(session.deviceID) FOR UPDATE", logger: logger)
            let replaced = try await connection.rows(
                """
                UPDATE ota_sessions SET outcome = 'replaced', ended_at_ms = \(session.startedAtMs), updated_at_ms = \(session.startedAtMs),
                  message = 'replaced by a new initiate' WHERE device_id = \(session.deviceID) AND outcome IS NULL RETURNING session_id
                """,
                logger: logger
            ).map { try $0.value("session_id", as: String.self) }
            try await connection.execute(
                """
                INSERT INTO ota_sessions (session_id, device_id, version, deployment_id, from_version, total_chunks, phase,
                  progress, started_at_ms, updated_at_ms)
                VALUES (\(session.sessionID), \(session.deviceID), \(session.version), \(session.deploymentID), \(session.fromVersion),
                  \(session.totalChunks), \(session.phase), 0, \(session.startedAtMs), \(session.startedAtMs))
                """,
                logger: logger
            )
            try await PostgresRetention.added(connection, logger, .otaSessions, deviceID: session.deviceID, pending: pending, policy: retention)
            // Progress the device sent just before initiating ("Starting firmware download...") belongs to this session.
            try await connection.execute(
                """
                UPDATE ota_events SET session_id = \(session.sessionID) WHERE device_id = \(session.deviceID) AND session_id IS NULL
                  AND received_at_ms >= \(session.startedAtMs - 120_000)
                """,
                logger: logger
            )
            return replaced
        }
    }

    public func activeSessions() async throws -> [OTASession] {
        try await database.rows("SELECT * FROM ota_sessions WHERE outcome IS NULL").map(OTASession.init)
    }

    public func recordProgress(_ event: OTAEvent, outcome: OTAOutcome?) async throws {
        let retention = retention
        try await admittingWrite(event.deviceID, nowMs: event.receivedAtMs) { connection, logger, pending in
            try await connection.execute(
                """
                INSERT INTO ota_events (session_id, device_id, phase, progress, message, device_time_s, received_at_ms,
                  device_time_invalid)
                VALUES (\(event.sessionID), \(event.deviceID), \(event.phase), \(event.progress), \(event.message), \(event.deviceTimeS),
                  \(event.receivedAtMs), \(event.deviceTimeInvalid))
                """,
                logger: logger
            )
            try await PostgresRetention.added(
                connection,
                logger,
                .otaEvents,
                deviceID: event.deviceID,
                sessionID: event.sessionID,
                pending: pending,
                policy: retention
            )
            guard let sessionID = event.sessionID else { return }
            try await connection.execute(
                """
                UPDATE ota_sessions SET phase = \(event.phase), progress = coalesce(\(event.progress), progress),
                  updated_at_ms = \(event.receivedAtMs), outcome = \(outcome?.rawValue),
                  ended_at_ms = CASE WHEN \(outcome?.rawValue)::text IS NULL THEN NULL ELSE \(event.receivedAtMs) END,
                  message = coalesce(\(event.message), message)
                WHERE session_id = \(sessionID) AND outcome IS NULL
                """,
                logger: logger
            )
        }
    }

    public func saveCounters(_ counters: [String: OTAChunkCounters]) async throws {
        guard !counters.isEmpty else { return }
        try await writer.write { connection, logger in
            for (sessionID, counter) in counters {
                try await connection.execute(
                    """
                    UPDATE ota_sessions SET chunks_served = chunks_served + \(counter.chunksServed),
                      bytes_served = bytes_served + \(counter.bytesServed),
                      last_chunk = \(counter.lastChunk), updated_at_ms = greatest(updated_at_ms, \(counter.updatedAtMs))
                    WHERE session_id = \(sessionID)
                    """,
                    logger: logger
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
        try await writer.write { connection, logger in
            try await !connection.rows(
                """
                UPDATE ota_sessions SET outcome = \(outcome.rawValue), message = coalesce(\(message), message),
                  reported_version = \(reportedVersion), reported_status = \(reportedStatus), ended_at_ms = \(nowMs),
                  updated_at_ms = \(nowMs) WHERE session_id = \(sessionID) AND outcome IS NULL RETURNING 1
                """,
                logger: logger
            ).isEmpty
        }
    }

    public func session(_ sessionID: String) async throws -> OTASession? {
        try await database.rows("SELECT * FROM ota_sessions WHERE session_id = \(sessionID)").first.map(OTASession.init)
    }

    public func sessions(deviceID: String, outcome: String?, before: OTASessionCursor?, limit: Int) async throws -> [OTASession] {
        try await database.rows(
            """
            SELECT * FROM ota_sessions WHERE device_id = \(deviceID)
              AND (\(outcome)::text IS NULL OR (\(outcome) = 'active' AND outcome IS NULL) OR outcome = \(outcome))
              AND (started_at_ms, seq) < (\(before?.startedAtMs ?? .max), \(before?.sequence ?? .max))
            ORDER BY started_at_ms DESC, seq DESC LIMIT \(max(0, limit))
            """
        ).map(OTASession.init)
    }

    public func events(sessionID: String, limit: Int) async throws -> [OTAEvent] {
        try await database.rows("SELECT * FROM ota_events WHERE session_id = \(sessionID) ORDER BY id LIMIT \(max(0, limit))").map { row in
            var event = OTAEvent(
                sessionID: try row.value("session_id"),
                deviceID: try row.value("device_id"),
                phase: try row.value("phase"),
                progress: try row.value("progress"),
                message: try row.value("message"),
                deviceTimeS: try row.value("device_time_s"),
                receivedAtMs: try row.value("received_at_ms")
            )
            event.deviceTimeInvalid = try row.value("device_time_invalid")
            return event
        }
    }

    public func otaCounts() async throws -> OTACounts {
        var counts = OTACounts()
        for row in try await database.rows("SELECT coalesce(outcome, 'active') AS outcome, count(*) AS n FROM ota_sessions GROUP BY 1") {
            counts.sessionsByOutcome[try row.value("outcome")] = try row.value("n")
        }
        counts.activeSessions = counts.sessionsByOutcome["active"] ?? 0
        if let row = try await database.rows(
            "SELECT coalesce(sum(chunks_served), 0)::bigint AS c, coalesce(sum(bytes_served), 0)::bigint AS b FROM ota_sessions"
        ).first {
            counts.chunksServed = try row.value("c")
            counts.bytesServed = try row.value("b")
        }
        return counts
    }

    public func setFirmwareVersion(deviceID: String, version: String) async throws {
        // Most calls change nothing (every check and every boot report names the running version): read first, so that
        // an anonymous `/ota/check` costs no write transaction.
        guard let row = try await database.rows("SELECT firmware_version FROM devices WHERE device_id = \(deviceID)").first,
            try row.value("firmware_version", as: String?.self) != version
        else { return }
        try await writer.write { connection, logger in
            try await connection.execute(
                "UPDATE devices SET firmware_version = \(version) WHERE device_id = \(deviceID) AND firmware_version IS DISTINCT FROM \(version)",
                logger: logger
            )
        }
    }

    public func expireSessions(idleBeforeMs: Int64, nowMs: Int64) async throws -> [(sessionID: String, deviceID: String)] {
        // Read first (the partial index of open sessions): no write transaction while nothing is idle.
        let idle =
            try await database.rows(
                "SELECT EXISTS (SELECT 1 FROM ota_sessions WHERE outcome IS NULL AND updated_at_ms < \(idleBeforeMs)) AS idle"
            ).first?.value("idle", as: Bool.self) ?? false
        guard idle else { return [] }
        return try await writer.write { connection, logger in
            try await connection.rows(
                """
                UPDATE ota_sessions SET outcome = 'expired', ended_at_ms = \(nowMs), updated_at_ms = \(nowMs),
                  message = 'no chunk or progress for too long' WHERE outcome IS NULL AND updated_at_ms < \(idleBeforeMs)
                RETURNING session_id, device_id
                """,
                logger: logger
            ).map { (try $0.value("session_id", as: String.self), try $0.value("device_id", as: String.self)) }
        }
    }
}

extension OTASession {
    init(_ row: PostgresRandomAccessRow) throws {
        self.init(
            sessionID: try row.value("session_id"),
            deviceID: try row.value("device_id"),
            version: try row.value("version"),
            deploymentID: try row.value("deployment_id"),
            fromVersion: try row.value("from_version"),
            totalChunks: try row.value("total_chunks"),
            chunksServed: try row.value("chunks_served"),
            bytesServed: try row.value("bytes_served"),
            lastChunk: try row.value("last_chunk"),
            phase: try row.value("phase"),
            progress: try row.value("progress"),
            startedAtMs: try row.value("started_at_ms"),
            updatedAtMs: try row.value("updated_at_ms"),
            endedAtMs: try row.value("ended_at_ms"),
            outcome: (try row.value("outcome", as: String?.self)).flatMap(OTAOutcome.init(rawValue:)),
            message: try row.value("message"),
            reportedVersion: try row.value("reported_version"),
            reportedStatus: try row.value("reported_status")
        )
        sequence = try row.value("seq")
    }
}
