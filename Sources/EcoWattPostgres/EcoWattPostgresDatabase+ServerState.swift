import EcoWattStorage
import PostgresNIO

extension EcoWattPostgresDatabase: ServerStateStore {
    public func adoptFleetKey(fingerprint: String) async throws -> FleetKeyChange? {
        let recorded = try await rows("SELECT value FROM server_state WHERE name = 'fleet_key_fingerprint'").first?.value("value", as: String.self)
        guard recorded != fingerprint else { return nil }
        let logger = logger
        return try await transaction { connection in
            try await connection.execute(
                """
                INSERT INTO server_state (name, value) VALUES ('fleet_key_fingerprint', \(fingerprint))
                ON CONFLICT (name) DO UPDATE SET value = excluded.value
                """,
                logger: logger
            )
            guard let recorded else { return nil }
            let count = try await connection.rows(
                """
                SELECT count(*) AS n FROM devices WHERE (last_nonce IS NOT NULL OR upload_count > 0)
                  AND device_id NOT IN (SELECT device_id FROM device_credentials WHERE key_hex IS NOT NULL)
                """,
                logger: logger
            ).first?.value("n", as: Int.self)
            return FleetKeyChange(previousFingerprint: recorded, devicesOnPreviousKey: count ?? 0)
        }
    }
}

extension PostgresWriter: StorageProbe {
    /// Readiness without a write (`/ready` is open): the database answers a read, and the writer runs and has not left
    /// work waiting longer than `stalledAfter`.
    public func probe(stalledAfter: Duration) async -> (ready: Bool, detail: String) {
        do {
            _ = try await database.rows("SELECT 1")
        } catch {
            return (false, "database not readable: \(error.logDescription)")
        }
        let writer = readiness(stalledAfter: stalledAfter)
        return (writer.ready, writer.ready ? "PostgreSQL readable; \(writer.detail)" : writer.detail)
    }
}
