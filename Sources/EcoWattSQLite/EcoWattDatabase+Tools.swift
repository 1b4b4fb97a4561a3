import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// Database work of the command-line tools (bench fixtures, device keys), so the CLI does not import GRDB.
extension EcoWattDatabase {
    /// `ecowatt bench queue-commands`: `devices` verified devices BENCH-0 … bound to `address`, each with `perDevice`
    /// pending `set_power` commands.
    public func queueBenchCommands(devices: Int, perDevice: Int, address: String, nowMs: Int64) async throws {
        try await pool.write { db in
            let device = try db.makeStatement(
                sql: """
                    INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, upload_count, admission, bound_address,
                      bound_at_ms, last_upload_ms) VALUES (?1, ?2, ?2, 1, 'verified', ?3, ?2, ?2)
                    ON CONFLICT (device_id) DO UPDATE SET admission = 'verified', bound_address = ?3, bound_at_ms = ?2
                    """
            )
            for index in 0..<devices {
                try device.execute(arguments: ["BENCH-\(index)", nowMs, address])
            }
            let statement = try db.makeStatement(
                sql: """
                    INSERT INTO commands (command_id, device_id, action, target_register, register_address, value, status,
                      created_at_ms) VALUES (?, ?, 'set_power', '8', 8, ?, 'pending', ?)
                    """
            )
            for round in 0..<perDevice {
                for device in 0..<devices {
                    try statement.execute(arguments: [UUID().uuidString.lowercased(), "BENCH-\(device)", round, nowMs])
                }
            }
        }
    }

    /// `ecowatt bench fill-outbox`: `messages` copies of `record` (device BENCH-(i % devices)) queued for the feed, in
    /// one transaction.
    public func fillBenchOutbox(record template: IngestRecord, messages: Int, devices: Int) async throws {
        try await pool.write { db in
            var record = template
            record.queueForFeed = true
            for index in 0..<messages {
                record.deviceID = "BENCH-\(index % devices)"
                record.nonce = UInt32(index / devices + 1)
                try SQLiteTelemetryStore.apply(record, db)
            }
        }
    }

    /// `ecowatt bench history`: stores `records` as accepted uploads in one transaction.
    public func fill(_ records: [IngestRecord]) async throws {
        try await pool.write { db in
            for record in records { try SQLiteTelemetryStore.apply(record, db) }
        }
    }

    /// `ecowatt device set-key`: sets (or with `nil` removes) a device's own HMAC key.
    public func setDeviceKey(deviceID: String, key: [UInt8]?) async throws {
        try await pool.write { db in try SQLiteTelemetryStore.setDeviceKey(db, deviceID: deviceID, key: key) }
    }
}
