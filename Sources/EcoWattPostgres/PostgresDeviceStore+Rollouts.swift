import EcoWattStorage
import Foundation
import Logging
import PostgresNIO

/// ``RolloutStore`` on PostgreSQL. Creating a rollout or adding devices takes an advisory lock, so two instances
/// never put one device into two open rollouts.
extension PostgresDeviceStore: RolloutStore {
    static let openStatuses = ["active", "paused", "halted"]

    public func createRollout(_ rollout: RolloutRecord, devices: [RolloutDeviceRecord]) async throws -> RolloutRecord {
        let settings = String(decoding: try JSONEncoder().encode(rollout.settings), as: UTF8.self)
        return try await writer.write { connection, logger in
            try await Self.refuseTaken(connection, logger, devices.map(\.deviceID))
            var stored = rollout
            stored.id =
                try await connection.rows(
                    """
                    INSERT INTO rollouts (version, status, settings, wave_count, current_wave, wave_opened_at_ms, reason, rollback_of,
                      created_by, notes, created_at_ms, updated_at_ms)
                    VALUES (\(rollout.version), \(rollout.status.rawValue), \(settings), \(rollout.waveCount), \(rollout.currentWave),
                      \(rollout.waveOpenedAtMs), \(rollout.reason), \(rollout.rollbackOf), \(rollout.createdBy), \(rollout.notes),
                      \(rollout.createdAtMs), \(rollout.updatedAtMs)) RETURNING id
                    """,
                    logger: logger
                ).first?.value("id") ?? 0
            try await Self.insert(connection, logger, devices, rolloutID: stored.id)
            return stored
        }
    }

    public func addRolloutDevices(rolloutID: Int64, devices: [RolloutDeviceRecord]) async throws {
        try await writer.write { connection, logger in
            try await Self.refuseTaken(connection, logger, devices.map(\.deviceID))
            try await Self.insert(connection, logger, devices, rolloutID: rolloutID)
        }
    }

    public func releaseRolloutDevices(rolloutID: Int64, deviceIDs: [String]) async throws -> Int {
        guard !deviceIDs.isEmpty else { return 0 }
        return try await writer.write { connection, logger in
            try await connection.rows(
                "DELETE FROM rollout_devices WHERE rollout_id = \(rolloutID) AND device_id = ANY(\(deviceIDs)) RETURNING 1",
                logger: logger
            ).count
        }
    }

    /// Throws ``RolloutStoreError/devicesInOpenRollout(rolloutID:deviceIDs:)`` for the devices of `deviceIDs` that are
    /// in an open rollout already (those of the oldest such rollout). The lock it takes lasts until the commit.
    static func refuseTaken(_ connection: PostgresConnection, _ logger: Logger, _ deviceIDs: [String]) async throws {
        try await connection.execute("SELECT pg_advisory_xact_lock(\(PostgresMigrations.Lock.rolloutMembership.rawValue))", logger: logger)
        guard !deviceIDs.isEmpty else { return }
        let taken = try await connection.rows(
            """
            SELECT DISTINCT ON (d.device_id) d.rollout_id, d.device_id FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
            WHERE d.device_id = ANY(\(deviceIDs)) AND r.status = ANY(\(openStatuses)) ORDER BY d.device_id, d.rollout_id
            """,
            logger: logger
        ).map { (try $0.value("rollout_id", as: Int64.self), try $0.value("device_id", as: String.self)) }
        if let first = taken.min(by: { $0.0 < $1.0 }) {
            throw RolloutStoreError.devicesInOpenRollout(rolloutID: first.0, deviceIDs: taken.filter { $0.0 == first.0 }.map(\.1).sorted())
        }
    }

    static func insert(_ connection: PostgresConnection, _ logger: Logger, _ devices: [RolloutDeviceRecord], rolloutID: Int64) async throws {
        guard !devices.isEmpty else { return }
        // One statement for the whole list (a rollout may hold thousands of devices); arrays carry no NULL here, so a
        // missing version travels as a flag.
        try await connection.execute(
            """
            INSERT INTO rollout_devices (rollout_id, device_id, wave, state, from_version, updated_at_ms)
            SELECT \(rolloutID), d.device_id, d.wave, d.state, CASE WHEN d.no_version THEN NULL ELSE d.from_version END,
              d.updated_at_ms
            FROM unnest(\(devices.map(\.deviceID))::text[], \(devices.map { Int64($0.wave) })::bigint[],
              \(devices.map(\.state.rawValue))::text[], \(devices.map { $0.fromVersion ?? "" })::text[],
              \(devices.map(\.updatedAtMs))::bigint[], \(devices.map { $0.fromVersion == nil })::boolean[])
              AS d(device_id, wave, state, from_version, updated_at_ms, no_version)
            """,
            logger: logger
        )
    }

    public func rollout(id: Int64) async throws -> RolloutRecord? {
        try await database.rows("SELECT * FROM rollouts WHERE id = \(id)").first.map(Self.rollout)
    }

    public func rollouts(status: RolloutStatus?, before: Int64?, limit: Int) async throws -> [RolloutRecord] {
        try await database.rows(
            """
            SELECT * FROM rollouts WHERE (\(status?.rawValue)::text IS NULL OR status = \(status?.rawValue)) AND id < \(before ?? .max)
            ORDER BY id DESC LIMIT \(max(0, limit))
            """
        ).map(Self.rollout)
    }

    public func updateRollout(_ rollout: RolloutRecord, from previous: RolloutRecord) async throws -> Bool {
        try await writer.write { connection, logger in
            !(try await connection.rows(
                """
                UPDATE rollouts SET status = \(rollout.status.rawValue), current_wave = \(rollout.currentWave),
                  wave_opened_at_ms = \(rollout.waveOpenedAtMs), reason = \(rollout.reason), updated_at_ms = \(rollout.updatedAtMs),
                  failed_before_resume = \(rollout.failedBeforeResume), finished_before_resume = \(rollout.finishedBeforeResume)
                WHERE id = \(rollout.id) AND status = \(previous.status.rawValue) AND current_wave = \(previous.currentWave)
                  AND wave_opened_at_ms = \(previous.waveOpenedAtMs) AND reason IS NOT DISTINCT FROM \(previous.reason)
                  AND updated_at_ms = \(previous.updatedAtMs)
                RETURNING id
                """,
                logger: logger
            ).isEmpty)
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
        try await database.rows(
            """
            SELECT * FROM rollout_devices WHERE rollout_id = \(rolloutID) AND (\(wave)::bigint IS NULL OR wave = \(wave))
              AND (\(state?.rawValue)::text IS NULL OR state = \(state?.rawValue)) AND device_id > \(after ?? "")
            ORDER BY device_id LIMIT \(max(0, limit))
            """
        ).map(Self.rolloutDevice)
    }

    public func updateRolloutDevice(_ device: RolloutDeviceRecord, from previous: RolloutDeviceRecord) async throws -> Bool {
        try await writer.write { connection, logger in
            !(try await connection.rows(
                """
                UPDATE rollout_devices SET state = \(device.state.rawValue), reason = \(device.reason), offered_at_ms = \(device.offeredAtMs),
                  started_at_ms = \(device.startedAtMs), installed_at_ms = \(device.installedAtMs),
                  finished_at_ms = \(device.finishedAtMs), healthy_uploads = \(device.healthyUploads),
                  updated_at_ms = \(device.updatedAtMs)
                WHERE rollout_id = \(device.rolloutID) AND device_id = \(device.deviceID) AND state = \(previous.state.rawValue)
                  AND reason IS NOT DISTINCT FROM \(previous.reason) AND healthy_uploads = \(previous.healthyUploads)
                  AND updated_at_ms = \(previous.updatedAtMs)
                RETURNING device_id
                """,
                logger: logger
            ).isEmpty)
        }
    }

    public func openRolloutEntry(deviceID: String) async throws -> (rollout: RolloutRecord, device: RolloutDeviceRecord)? {
        guard
            let device = try await database.rows(
                """
                SELECT d.* FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
                WHERE d.device_id = \(deviceID) AND r.status = ANY(\(Self.openStatuses)) ORDER BY d.rollout_id DESC LIMIT 1
                """
            ).first.map(Self.rolloutDevice),
            let rollout = try await rollout(id: device.rolloutID)
        else { return nil }
        return (rollout, device)
    }

    public func rolloutCounts(rolloutID: Int64) async throws -> [Int: [RolloutDeviceState: Int]] {
        var counts: [Int: [RolloutDeviceState: Int]] = [:]
        for row in try await database.rows(
            "SELECT wave, state, count(*) AS n FROM rollout_devices WHERE rollout_id = \(rolloutID) GROUP BY wave, state"
        ) {
            guard let state = RolloutDeviceState(rawValue: try row.value("state")) else { continue }
            counts[try row.value("wave"), default: [:]][state] = try row.value("n")
        }
        return counts
    }

    static func rollout(_ row: PostgresRandomAccessRow) throws -> RolloutRecord {
        let text: String = try row.value("settings")
        var rollout = RolloutRecord(
            version: try row.value("version"),
            settings: (try? JSONDecoder().decode(RolloutSettings.self, from: Data(text.utf8))) ?? RolloutSettings(),
            waveCount: try row.value("wave_count"),
            rollbackOf: try row.value("rollback_of"),
            createdBy: try row.value("created_by"),
            notes: try row.value("notes"),
            nowMs: try row.value("created_at_ms")
        )
        rollout.id = try row.value("id")
        rollout.status = RolloutStatus(rawValue: try row.value("status")) ?? .cancelled
        rollout.currentWave = try row.value("current_wave")
        rollout.waveOpenedAtMs = try row.value("wave_opened_at_ms")
        rollout.reason = try row.value("reason")
        rollout.failedBeforeResume = try row.value("failed_before_resume")
        rollout.finishedBeforeResume = try row.value("finished_before_resume")
        rollout.updatedAtMs = try row.value("updated_at_ms")
        return rollout
    }

    static func rolloutDevice(_ row: PostgresRandomAccessRow) throws -> RolloutDeviceRecord {
        var device = RolloutDeviceRecord(
            rolloutID: try row.value("rollout_id"),
            deviceID: try row.value("device_id"),
            wave: try row.value("wave"),
            fromVersion: try row.value("from_version"),
            nowMs: try row.value("updated_at_ms")
        )
        device.state = RolloutDeviceState(rawValue: try row.value("state")) ?? .pending
        device.reason = try row.value("reason")
        device.offeredAtMs = try row.value("offered_at_ms")
        device.startedAtMs = try row.value("started_at_ms")
        device.installedAtMs = try row.value("installed_at_ms")
        device.finishedAtMs = try row.value("finished_at_ms")
        device.healthyUploads = try row.value("healthy_uploads")
        return device
    }
}
