import EcoWattStorage
import Foundation
import GRDB

/// ``RolloutStore`` on SQLite (issue 21).
extension SQLiteDeviceStore: RolloutStore {
    static let openStatuses = "('active', 'paused', 'halted')"

    public func createRollout(_ rollout: RolloutRecord, devices: [RolloutDeviceRecord]) async throws -> RolloutRecord {
        let settings = String(decoding: try JSONEncoder().encode(rollout.settings), as: UTF8.self)
        return try await writer.write { db in
            try Self.refuseTaken(db, devices.map(\.deviceID))
            try db.cachedStatement(
                sql: """
                    INSERT INTO rollouts (version, status, settings, wave_count, current_wave, wave_opened_at_ms, reason,
                        rollback_of, created_by, notes, created_at_ms, updated_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    rollout.version, rollout.status.rawValue, settings, rollout.waveCount, rollout.currentWave,
                    rollout.waveOpenedAtMs, rollout.reason, rollout.rollbackOf, rollout.createdBy, rollout.notes,
                    rollout.createdAtMs, rollout.updatedAtMs,
                ]
            )
            var stored = rollout
            stored.id = db.lastInsertedRowID
            try Self.insert(db, devices, rolloutID: stored.id)
            return stored
        }
    }

    public func addRolloutDevices(rolloutID: Int64, devices: [RolloutDeviceRecord]) async throws {
        try await writer.write { db in
            try Self.refuseTaken(db, devices.map(\.deviceID))
            try Self.insert(db, devices, rolloutID: rolloutID)
        }
    }

    public func releaseRolloutDevices(rolloutID: Int64, deviceIDs: [String]) async throws -> Int {
        try await writer.write { db in
            var released = 0
            for start in stride(from: 0, to: deviceIDs.count, by: 500) {
                let slice = Array(deviceIDs[start..<min(start + 500, deviceIDs.count)])
                // Not cached: the statement's text varies with the slice.
                try db.execute(
                    sql: "DELETE FROM rollout_devices WHERE rollout_id = ? AND device_id IN (\(databaseQuestionMarks(count: slice.count)))",
                    arguments: StatementArguments([rolloutID] + slice.map { $0 as DatabaseValueConvertible })
                )
                released += db.changesCount
            }
            return released
        }
    }

    /// Throws ``RolloutStoreError/devicesInOpenRollout(rolloutID:deviceIDs:)`` for the devices of `deviceIDs` that are
    /// in an open rollout already (those of the oldest such rollout).
    static func refuseTaken(_ db: Database, _ deviceIDs: [String]) throws {
        var taken: [(Int64, String)] = []
        let statement = try db.makeStatement(
            sql: """
                SELECT d.rollout_id FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
                WHERE d.device_id = ? AND r.status IN \(openStatuses) ORDER BY d.rollout_id LIMIT 1
                """
        )
        for deviceID in deviceIDs {
            if let id = try Int64.fetchOne(statement, arguments: [deviceID]) { taken.append((id, deviceID)) }
        }
        if let first = taken.min(by: { $0.0 < $1.0 }) {
            throw RolloutStoreError.devicesInOpenRollout(rolloutID: first.0, deviceIDs: taken.filter { $0.0 == first.0 }.map(\.1).sorted())
        }
    }

    static func insert(_ db: Database, _ devices: [RolloutDeviceRecord], rolloutID: Int64) throws {
        let insert = try db.makeStatement(
            sql: """
                INSERT INTO rollout_devices (rollout_id, device_id, wave, state, from_version, updated_at_ms)
                VALUES (?, ?, ?, ?, ?, ?)
                """
        )
        for device in devices {
            try insert.execute(arguments: [
                rolloutID, device.deviceID, device.wave, device.state.rawValue, device.fromVersion, device.updatedAtMs,
            ])
        }
    }

    public func rollout(id: Int64) async throws -> RolloutRecord? {
        try await database.pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM rollouts WHERE id = ?"), arguments: [id]).map(Self.rollout)
        }
    }

    public func rollouts(status: RolloutStatus?, before: Int64?, limit: Int) async throws -> [RolloutRecord] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT * FROM rollouts WHERE (?1 IS NULL OR status = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ),
                arguments: [status?.rawValue, before ?? Int64.max, limit]
            )
            .map(Self.rollout)
        }
    }

    public func updateRollout(_ rollout: RolloutRecord, from previous: RolloutRecord) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE rollouts SET status = ?, current_wave = ?, wave_opened_at_ms = ?, reason = ?, updated_at_ms = ?,
                        failed_before_resume = ?, finished_before_resume = ?
                    WHERE id = ? AND status = ? AND current_wave = ? AND wave_opened_at_ms = ? AND reason IS ? AND updated_at_ms = ?
                    """
            ).execute(
                arguments: [
                    rollout.status.rawValue, rollout.currentWave, rollout.waveOpenedAtMs, rollout.reason, rollout.updatedAtMs,
                    rollout.failedBeforeResume, rollout.finishedBeforeResume, rollout.id, previous.status.rawValue, previous.currentWave,
                    previous.waveOpenedAtMs, previous.reason,
                    previous.updatedAtMs,
                ]
            )
            return db.changesCount > 0
        }
    }

    public func rolloutDevices(
        rolloutID: Int64,
        wave: Int?,
        state: RolloutDeviceState?,
        after: String?,
        limit: Int
    ) async throws
        -> [RolloutDeviceRecord]
    {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT * FROM rollout_devices WHERE rollout_id = ?1 AND (?2 IS NULL OR wave = ?2)
                            AND (?3 IS NULL OR state = ?3) AND device_id > ?4
                        ORDER BY device_id LIMIT ?5
                        """
                ),
                arguments: [rolloutID, wave, state?.rawValue, after ?? "", limit]
            )
            .map(Self.rolloutDevice)
        }
    }

    public func updateRolloutDevice(_ device: RolloutDeviceRecord, from previous: RolloutDeviceRecord) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE rollout_devices SET state = ?, reason = ?, offered_at_ms = ?, started_at_ms = ?,
                        installed_at_ms = ?, finished_at_ms = ?, healthy_uploads = ?, updated_at_ms = ?
                    WHERE rollout_id = ? AND device_id = ? AND state = ? AND reason IS ? AND healthy_uploads = ?
                        AND updated_at_ms = ?
                    """
            ).execute(
                arguments: [
                    device.state.rawValue, device.reason, device.offeredAtMs, device.startedAtMs, device.installedAtMs,
                    device.finishedAtMs, device.healthyUploads, device.updatedAtMs, device.rolloutID, device.deviceID,
                    previous.state.rawValue, previous.reason, previous.healthyUploads, previous.updatedAtMs,
                ]
            )
            return db.changesCount > 0
        }
    }

    public func openRolloutEntry(deviceID: String) async throws -> (rollout: RolloutRecord, device: RolloutDeviceRecord)? {
        try await database.pool.read { db in
            guard
                let device = try Row.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT d.* FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
                            WHERE d.device_id = ? AND r.status IN \(Self.openStatuses) ORDER BY d.rollout_id DESC LIMIT 1
                            """
                    ),
                    arguments: [deviceID]
                ).map(Self.rolloutDevice),
                let rollout = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM rollouts WHERE id = ?"), arguments: [device.rolloutID])
                    .map(Self.rollout)
            else { return nil }
            return (rollout, device)
        }
    }

    public func rolloutCounts(rolloutID: Int64) async throws -> [Int: [RolloutDeviceState: Int]] {
        try await database.pool.read { db in
            var counts: [Int: [RolloutDeviceState: Int]] = [:]
            for row in try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT wave, state, COUNT(*) AS n FROM rollout_devices WHERE rollout_id = ? GROUP BY wave, state"
                ),
                arguments: [rolloutID]
            ) {
                guard let state = RolloutDeviceState(rawValue: row["state"]) else { continue }
                counts[row["wave"], default: [:]][state] = row["n"]
            }
            return counts
        }
    }

    static func rollout(_ row: Row) throws -> RolloutRecord {
        let text: String = row["settings"]
        var rollout = RolloutRecord(
            version: row["version"],
            settings: (try? JSONDecoder().decode(RolloutSettings.self, from: Data(text.utf8))) ?? RolloutSettings(),
            waveCount: row["wave_count"],
            rollbackOf: row["rollback_of"],
            createdBy: row["created_by"],
            notes: row["notes"],
            nowMs: row["created_at_ms"]
        )
        rollout.id = row["id"]
        rollout.status = RolloutStatus(rawValue: row["status"]) ?? .cancelled
        rollout.currentWave = row["current_wave"]
        rollout.waveOpenedAtMs = row["wave_opened_at_ms"]
        rollout.reason = row["reason"]
        rollout.failedBeforeResume = row["failed_before_resume"]
        rollout.finishedBeforeResume = row["finished_before_resume"]
        rollout.updatedAtMs = row["updated_at_ms"]
        return rollout
    }

    static func rolloutDevice(_ row: Row) -> RolloutDeviceRecord {
        var device = RolloutDeviceRecord(
            rolloutID: row["rollout_id"],
            deviceID: row["device_id"],
            wave: row["wave"],
            fromVersion: row["from_version"],
            nowMs: row["updated_at_ms"]
        )
        device.state = RolloutDeviceState(rawValue: row["state"]) ?? .pending
        device.reason = row["reason"]
        device.offeredAtMs = row["offered_at_ms"]
        device.startedAtMs = row["started_at_ms"]
        device.installedAtMs = row["installed_at_ms"]
        device.finishedAtMs = row["finished_at_ms"]
        device.healthyUploads = row["healthy_uploads"]
        return device
    }
}
