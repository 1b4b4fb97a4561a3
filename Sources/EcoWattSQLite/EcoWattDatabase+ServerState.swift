import EcoWattStorage
import Foundation
import GRDB

extension EcoWattDatabase: ServerStateStore {
    public func adoptFleetKey(fingerprint: String) async throws -> FleetKeyChange? {
        let recorded = try await pool.read { db in
            try String.fetchOne(db.cachedStatement(sql: "SELECT value FROM server_state WHERE name = 'fleet_key_fingerprint'"))
        }
        guard recorded != fingerprint else { return nil }
        return try await pool.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO server_state (name, value) VALUES ('fleet_key_fingerprint', ?)
                    ON CONFLICT (name) DO UPDATE SET value = excluded.value
                    """
            ).execute(
                arguments: [fingerprint]
            )
            guard let recorded else { return nil }
            let count = try Int.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT COUNT(*) FROM devices
                        WHERE (last_nonce IS NOT NULL OR upload_count > 0) AND device_id NOT IN (SELECT device_id FROM device_credentials WHERE key_hex IS NOT NULL)
                        """
                )
            )
            return FleetKeyChange(previousFingerprint: recorded, devicesOnPreviousKey: count ?? 0)
        }
    }
}
