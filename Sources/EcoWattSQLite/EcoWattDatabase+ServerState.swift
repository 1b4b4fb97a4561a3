import EcoWattStorage
import Foundation
import GRDB

extension EcoWattDatabase {
    /// What changed when the server starts with another fleet key than at its last start.
    public struct FleetKeyChange: Sendable, Equatable {
        /// The fingerprint recorded at the last start.
        public var previousFingerprint: String
        /// Devices with a verified upload and no per-device key: their firmware signs with the previous key, so every
        /// upload of theirs is now refused.
        public var devicesOnPreviousKey: Int
    }

    /// Records the fingerprint of the fleet key uploads are verified with; a change since the last start is returned
    /// (nothing on the first start, and no write while the key stays the same).
    public func adoptFleetKey(fingerprint: String) throws -> FleetKeyChange? {
        let recorded = try pool.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM server_state WHERE name = 'fleet_key_fingerprint'")
        }
        guard recorded != fingerprint else { return nil }
        return try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO server_state (name, value) VALUES ('fleet_key_fingerprint', ?)
                    ON CONFLICT (name) DO UPDATE SET value = excluded.value
                    """,
                arguments: [fingerprint]
            )
            guard let recorded else { return nil }
            let count = try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM devices
                    WHERE (last_nonce IS NOT NULL OR upload_count > 0) AND device_id NOT IN (SELECT device_id FROM device_credentials WHERE key_hex IS NOT NULL)
                    """
            )
            return FleetKeyChange(previousFingerprint: recorded, devicesOnPreviousKey: count ?? 0)
        }
    }
}
