import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import PostgresNIO

/// ``DeviceCredentialStore`` on PostgreSQL (`device_credentials`).
extension PostgresTelemetryStore {
    public func deviceCredentials() async throws -> [String: DeviceCredential] {
        var credentials = [String: DeviceCredential]()
        for row in try await database.rows("SELECT * FROM device_credentials") {
            credentials[try row.value("device_id")] = try Self.credential(row)
        }
        return credentials
    }

    public func deviceCredential(_ deviceID: String) async throws -> DeviceCredential? {
        try await database.rows("SELECT * FROM device_credentials WHERE device_id = \(deviceID)").first.map(Self.credential)
    }

    static func credential(_ row: PostgresRandomAccessRow) throws -> DeviceCredential {
        DeviceCredential(
            key: (try row.value("key_hex", as: String?.self)).flatMap { HexCoding.decode($0) },
            nextKey: (try row.value("next_key_hex", as: String?.self)).flatMap { HexCoding.decode($0) },
            revokedAtMs: try row.value("revoked_at_ms"),
            updatedAtMs: try row.value("updated_at_ms")
        )
    }

    public func setDeviceKey(deviceID: String, key: [UInt8]?) async throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try await writer.write { connection, logger in
            if let key {
                try await connection.execute(
                    """
                    INSERT INTO device_credentials (device_id, key_hex, updated_at_ms) VALUES (\(deviceID), \(HexCoding.encode(key)), \(now))
                    ON CONFLICT (device_id) DO UPDATE SET key_hex = excluded.key_hex, next_key_hex = NULL,
                      revoked_at_ms = NULL, updated_at_ms = excluded.updated_at_ms
                    """,
                    logger: logger
                )
            } else {
                try await connection.execute("DELETE FROM device_credentials WHERE device_id = \(deviceID)", logger: logger)
            }
        }
    }

    public func provisionDevice(_ deviceID: String, key: [UInt8], replace: Bool, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            let existing = try await connection.rows(
                "SELECT key_hex FROM device_credentials WHERE device_id = \(deviceID) FOR UPDATE",
                logger: logger
            ).first?.value("key_hex", as: String?.self)
            if existing != nil, !replace { return false }
            try await PostgresRetention.adopt(connection, logger, deviceID: deviceID, nowMs: nowMs)
            // The lock above holds only a row that exists: another instance provisioning a new device at once inserts
            // too, and without `replace` the second insert leaves the first key in place and says so.
            return try await !connection.rows(
                """
                INSERT INTO device_credentials (device_id, key_hex, updated_at_ms) VALUES (\(deviceID), \(HexCoding.encode(key)), \(nowMs))
                ON CONFLICT (device_id) DO UPDATE SET key_hex = excluded.key_hex, next_key_hex = NULL, revoked_at_ms = NULL,
                  updated_at_ms = excluded.updated_at_ms
                WHERE \(replace) OR device_credentials.key_hex IS NULL
                RETURNING 1
                """,
                logger: logger
            ).isEmpty
        }
    }

    public func setNextDeviceKey(deviceID: String, key: [UInt8]?, nowMs: Int64) async throws {
        let hex = key.map { HexCoding.encode($0) }
        try await writer.write { connection, logger in
            try await connection.execute(
                """
                INSERT INTO device_credentials (device_id, next_key_hex, updated_at_ms) VALUES (\(deviceID), \(hex), \(nowMs))
                ON CONFLICT (device_id) DO UPDATE SET next_key_hex = excluded.next_key_hex, updated_at_ms = excluded.updated_at_ms
                """,
                logger: logger
            )
        }
    }

    public func promoteNextDeviceKey(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            try await !connection.rows(
                """
                UPDATE device_credentials SET key_hex = next_key_hex, next_key_hex = NULL, updated_at_ms = \(nowMs)
                WHERE device_id = \(deviceID) AND next_key_hex IS NOT NULL RETURNING 1
                """,
                logger: logger
            ).isEmpty
        }
    }

    public func revokeDevice(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            try await !connection.rows(
                """
                INSERT INTO device_credentials (device_id, revoked_at_ms, updated_at_ms) VALUES (\(deviceID), \(nowMs), \(nowMs))
                ON CONFLICT (device_id) DO UPDATE SET revoked_at_ms = excluded.revoked_at_ms, updated_at_ms = excluded.updated_at_ms
                WHERE device_credentials.revoked_at_ms IS NULL RETURNING 1
                """,
                logger: logger
            ).isEmpty
        }
    }

    public func recordRefusedUpload(deviceID: String, nowMs: Int64) async throws {
        let retention = retention
        let (created, evicted) = try await writer.write { connection, logger in
            let admission = try await PostgresRetention.admit(connection, logger, deviceID: deviceID, nowMs: nowMs, policy: retention)
            try await connection.execute(
                """
                UPDATE devices SET refused_uploads = refused_uploads + 1, last_seen_ms = greatest(last_seen_ms, \(nowMs))
                WHERE device_id = \(deviceID)
                """,
                logger: logger
            )
            return (admission.created, admission.evicted)
        }
        if !evicted.isEmpty { events.report(.evicted(evicted)) }
        if created { events.report(.admitted([deviceID])) }
    }
}
