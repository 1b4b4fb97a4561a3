import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// ``DeviceCredentialStore`` on SQLite (`device_credentials`, issue 19).
extension SQLiteTelemetryStore {
    public func deviceCredentials() async throws -> [String: DeviceCredential] {
        try await database.pool.read { db in
            var credentials = [String: DeviceCredential]()
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM device_credentials")) {
                credentials[row["device_id"]] = Self.credential(row)
            }
            return credentials
        }
    }

    public func deviceCredential(_ deviceID: String) async throws -> DeviceCredential? {
        try await database.pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM device_credentials WHERE device_id = ?"), arguments: [deviceID]).map(
                Self.credential
            )
        }
    }

    static func credential(_ row: Row) -> DeviceCredential {
        DeviceCredential(
            key: (row["key_hex"] as String?).flatMap { HexCoding.decode($0) },
            nextKey: (row["next_key_hex"] as String?).flatMap { HexCoding.decode($0) },
            revokedAtMs: row["revoked_at_ms"],
            updatedAtMs: row["updated_at_ms"]
        )
    }

    public func setDeviceKey(deviceID: String, key: [UInt8]?) async throws {
        try await writer.write { db in try Self.setDeviceKey(db, deviceID: deviceID, key: key) }
    }

    /// Sets (or with `nil` removes) a device's current key on `db`, clearing a next key and a revocation (used
    /// directly by `ecowatt device set-key`).
    public static func setDeviceKey(_ db: Database, deviceID: String, key: [UInt8]?) throws {
        if let key {
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_credentials (device_id, key_hex, updated_at_ms) VALUES (?, ?, ?)
                    ON CONFLICT(device_id) DO UPDATE SET key_hex = excluded.key_hex, next_key_hex = NULL,
                      revoked_at_ms = NULL, updated_at_ms = excluded.updated_at_ms
                    """
            ).execute(
                arguments: [deviceID, HexCoding.encode(key), Int64(Date().timeIntervalSince1970 * 1000)]
            )
        } else {
            try db.cachedStatement(sql: "DELETE FROM device_credentials WHERE device_id = ?").execute(arguments: [deviceID])
        }
    }

    public func provisionDevice(_ deviceID: String, key: [UInt8], replace: Bool, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            let existing = try String.fetchOne(
                db.cachedStatement(sql: "SELECT key_hex FROM device_credentials WHERE device_id = ?"),
                arguments: [deviceID]
            )
            if existing != nil, !replace { return false }
            try Retention.adopt(db, deviceID: deviceID, nowMs: nowMs)
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_credentials (device_id, key_hex, updated_at_ms) VALUES (?1, ?2, ?3)
                    ON CONFLICT(device_id) DO UPDATE SET key_hex = ?2, next_key_hex = NULL, revoked_at_ms = NULL,
                      updated_at_ms = ?3
                    """
            ).execute(
                arguments: [deviceID, HexCoding.encode(key), nowMs]
            )
            return true
        }
    }

    public func setNextDeviceKey(deviceID: String, key: [UInt8]?, nowMs: Int64) async throws {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_credentials (device_id, next_key_hex, updated_at_ms) VALUES (?1, ?2, ?3)
                    ON CONFLICT(device_id) DO UPDATE SET next_key_hex = ?2, updated_at_ms = ?3
                    """
            ).execute(
                arguments: [deviceID, key.map { HexCoding.encode($0) }, nowMs]
            )
        }
    }

    public func promoteNextDeviceKey(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE device_credentials SET key_hex = next_key_hex, next_key_hex = NULL, updated_at_ms = ?
                    WHERE device_id = ? AND next_key_hex IS NOT NULL
                    """
            ).execute(
                arguments: [nowMs, deviceID]
            )
            return db.changesCount > 0
        }
    }

    public func revokeDevice(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO device_credentials (device_id, revoked_at_ms, updated_at_ms) VALUES (?1, ?2, ?2)
                    ON CONFLICT(device_id) DO UPDATE SET revoked_at_ms = ?2, updated_at_ms = ?2
                    WHERE device_credentials.revoked_at_ms IS NULL
                    """
            ).execute(
                arguments: [deviceID, nowMs]
            )
            return db.changesCount > 0
        }
    }

    public func recordRefusedUpload(deviceID: String, nowMs: Int64) async throws {
        let retention = retention
        let (created, evicted) = try await writer.write { db in
            let admission = try Retention.admit(db, deviceID: deviceID, nowMs: nowMs, policy: retention)
            try db.cachedStatement(
                sql: """
                    UPDATE devices SET refused_uploads = refused_uploads + 1, last_seen_ms = max(last_seen_ms, ?)
                    WHERE device_id = ?
                    """
            ).execute(
                arguments: [nowMs, deviceID]
            )
            return (admission.created, admission.evicted)
        }
        if !evicted.isEmpty { events.report(.evicted(evicted)) }
        if created { events.report(.admitted([deviceID])) }
    }
}
