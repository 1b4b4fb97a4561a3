import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// Database work of the command-line tools (bench fixtures, device keys), so the CLI does not import GRDB.
extension EcoWattDatabase {
    /// `ecowatt bench seed`: `devices` verified devices BENCH-0 … bound to `address`, each with `commands` `set_power`
    /// commands, pending or (`dispatched`) already sent to `address` with the ids BENCH-<device>-<round>; with
    /// `pendingConfigs`, each device also has a configuration change delivered and awaiting its acknowledgement.
    public func seedBench(
        devices: Int,
        commands: Int,
        dispatched: Bool,
        pendingConfigs: Bool,
        address: String,
        nowMs: Int64
    ) async throws {
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
            let command = try db.makeStatement(
                sql: """
                    INSERT INTO commands (command_id, device_id, action, target_register, register_address, value, status,
                      created_at_ms, dispatched_at_ms, dispatched_to) VALUES (?, ?, 'set_power', '8', 8, ?, ?, ?, ?, ?)
                    """
            )
            for round in 0..<commands {
                for index in 0..<devices {
                    let id = dispatched ? "BENCH-\(index)-\(round)" : UUID().uuidString.lowercased()
                    try command.execute(arguments: [
                        id, "BENCH-\(index)", round, dispatched ? "dispatched" : "pending", nowMs, dispatched ? nowMs : nil,
                        dispatched ? address : nil,
                    ])
                }
            }
            guard pendingConfigs else { return }
            let config = try db.makeStatement(
                sql: """
                    INSERT INTO device_configs (device_id, running_json, running_at_ms, pending_json, pending_created_at_ms,
                      pending_delivered_at_ms) VALUES (?1, '{"upload_interval":15}', ?2, '{"upload_interval":20}', ?2, ?2)
                    ON CONFLICT (device_id) DO UPDATE SET pending_json = '{"upload_interval":20}',
                      pending_created_at_ms = ?2, pending_delivered_at_ms = ?2
                    """
            )
            for index in 0..<devices {
                try config.execute(arguments: ["BENCH-\(index)", nowMs])
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
