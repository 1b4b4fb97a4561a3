import EcoWattStorage
import Foundation
import GRDB

/// The SQLite database (GRDB `DatabasePool`, WAL) with the versioned schema.
public final class EcoWattDatabase: Sendable {
    /// The pool: concurrent readers, one writer.
    public let pool: DatabasePool
    /// Path of the SQLite file.
    public let path: String
    /// How hard each commit is pushed to disk.
    public let durability: Durability

    /// The database file's name in a data directory.
    public static let fileName = "ecowatt.sqlite"

    /// The database file of the data directory `directory`.
    public static func path(inDirectory directory: String) -> String {
        (directory as NSString).appendingPathComponent(fileName)
    }

    /// Opens (creating if needed) the database at `path` and migrates it to the latest schema.
    /// - Parameter walAutocheckpointPages: WAL size (pages) at which a commit also checkpoints and restarts the WAL.
    public init(path: String, durability: Durability = .normal, walAutocheckpointPages: Int = 1000) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            // Small automatic checkpoints restart the WAL; WALCheckpointer copies pages ahead so they stay short.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(walAutocheckpointPages)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        self.path = path
        self.durability = durability
        self.pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    /// The server's start: the pending-device counter can drift when a registration races a first upload, so it is
    /// recounted (cheap: a partial index over at most the pending cap).
    public func recountPendingDevices() throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE retention SET rows = (SELECT COUNT(*) FROM devices WHERE admission = 'pending') WHERE name = ?",
                arguments: [Retention.pendingDevices]
            )
        }
    }

    /// Checkpoints the WAL into the database file (truncating it) and closes the pool. Further use throws.
    /// - Parameter checkpoint: `false` for tools that run beside a server (the server checkpoints; a truncating
    ///   checkpoint would wait for its transactions).
    public func close(checkpoint: Bool = true) throws {
        if checkpoint { _ = try pool.writeWithoutTransaction { try $0.checkpoint(.truncate) } }
        try pool.close()
    }

    /// Devices that uploaded verified telemetry or that an operator created, in the database at `path` (read-only, so
    /// a running server is not disturbed); `nil` when there is no database there.
    public static func admittedDeviceCount(path: String) throws -> Int? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try readOnly(path).read { db in
            guard try db.tableExists("devices") else { return 0 }
            let hasAdmission = try db.columns(in: "devices").contains { $0.name == "admission" }
            return try Int.fetchOne(
                db,
                sql: hasAdmission ? "SELECT COUNT(*) FROM devices WHERE admission != 'pending'" : "SELECT COUNT(*) FROM devices"
            ) ?? 0
        }
    }

    /// A read-only connection to the database file at `path`, for the tools that look at a database the server may be
    /// serving (backup, inspection, statistics): WAL readers never block the server's writer; a busy lock is waited
    /// for up to 10 s.
    static func readOnly(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    /// The versioned migrations. Never edit a shipped migration: add a new one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-telemetry") { db in
            // One row per device holds everything ingest updates per upload, so an upload dirties one page here.
            try db.create(table: "devices") { t in
                t.primaryKey("device_id", .text)
                t.column("first_seen_ms", .integer).notNull()
                t.column("last_seen_ms", .integer).notNull()
                t.column("upload_count", .integer).notNull().defaults(to: 0)
                t.column("last_nonce", .integer)  // NULL: no anti-replay state (never seen, or reset by an operator)
                t.column("stream_state", .blob)  // DeviceStreamState.serialized; NULL: fresh (boot)
            }
            try db.create(table: "device_keys") { t in
                t.primaryKey("device_id", .text)
                t.column("key_hex", .text).notNull()
                t.column("updated_at_ms", .integer).notNull()
            }
            try db.create(table: "packets") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device_id", .text).notNull()
                t.column("nonce", .integer).notNull()
                t.column("received_at_ms", .integer).notNull()
                t.column("packet_index", .integer).notNull()
                t.column("marker", .integer)
                t.column("method", .text).notNull()
                t.column("register_layout", .text).notNull()
                t.column("sample_count", .integer).notNull()
                t.column("last_sample_ms", .integer).notNull()
                t.column("decoded", .boolean).notNull()
                t.column("approximate", .boolean).notNull()
                t.column("truncated", .boolean).notNull()
                t.column("reason", .text)
                t.column("detail", .text)
                t.column("blob", .blob)
                t.column("compressed_size", .integer).notNull()
                t.column("original_size", .integer).notNull()
            }
            try db.create(index: "packets_device_time", on: "packets", columns: ["device_id", "last_sample_ms"])
            try db.create(table: "samples") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device_id", .text).notNull()
                t.column("packet_id", .integer).notNull()
                t.column("ts_ms", .integer).notNull()
                t.column("register_layout", .text).notNull()
                t.column("raw_values", .text).notNull()
                t.column("method", .text).notNull()
                t.column("ratio", .double).notNull()
                t.column("approximate", .boolean).notNull()
            }
            try db.create(index: "samples_device_time", on: "samples", columns: ["device_id", "ts_ms"])
        }
        migrator.registerMigration("v2-registry-commands") { db in
            try db.alter(table: "devices") { t in
                t.add(column: "device_name", .text)
                t.add(column: "location", .text)
                t.add(column: "description", .text)
                t.add(column: "firmware_version", .text)
                t.add(column: "registered_at_ms", .integer)
            }
            try db.create(table: "commands") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("command_id", .text).notNull().unique()
                t.column("device_id", .text).notNull()
                t.column("action", .text).notNull()
                t.column("target_register", .text)
                t.column("register_address", .integer)
                t.column("value", .integer)
                t.column("status", .text).notNull()
                t.column("idempotency_key", .text)
                t.column("created_at_ms", .integer).notNull()
                t.column("expires_at_ms", .integer)
                t.column("dispatched_at_ms", .integer)
                t.column("finished_at_ms", .integer)
                t.column("result_status", .text)
                t.column("executed_at", .text)
                t.column("result_json", .text)
                t.column("error_msg", .text)
            }
            try db.create(index: "commands_device_status", on: "commands", columns: ["device_id", "status", "id"])
            try db.create(index: "commands_status_dispatched", on: "commands", columns: ["status", "dispatched_at_ms"])
            try db.execute(
                sql: """
                    CREATE UNIQUE INDEX commands_idempotency ON commands(device_id, idempotency_key)
                    WHERE idempotency_key IS NOT NULL
                    """
            )
        }
        migrator.registerMigration("v3-config") { db in
            try db.create(table: "device_configs") { t in
                t.primaryKey("device_id", .text)
                t.column("running_json", .text)  // what the device runs: boot report + applied updates
                t.column("running_at_ms", .integer)
                t.column("pending_json", .text)  // accepted, not yet acknowledged: {"sampling_interval":…}
                t.column("pending_created_at_ms", .integer)
                t.column("pending_delivered_at_ms", .integer)
            }
            try db.create(table: "config_history") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device_id", .text).notNull()
                t.column("event", .text).notNull()  // requested, delivered, applied, cleared_noop, boot_report
                t.column("config_json", .text)
                t.column("detail", .text)
                t.column("created_at_ms", .integer).notNull()
            }
            try db.create(index: "config_history_device", on: "config_history", columns: ["device_id", "id"])
        }
        migrator.registerMigration("v4-reports") { db in
            try db.create(table: "power_reports") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device_id", .text).notNull()
                t.column("device_time_ms", .integer)  // epoch ms, or millis() since boot when unsynced
                t.column("received_at_ms", .integer).notNull()
                t.column("enabled", .boolean)
                t.column("techniques", .integer)
                t.column("avg_current_ma", .double)  // NULL when the device printed nan/inf
                t.column("energy_saved_mah", .double)
                t.column("peripheral_savings_mah", .double)
                t.column("uptime_ms", .integer)
                t.column("high_perf_ms", .integer)
                t.column("normal_ms", .integer)
                t.column("low_power_ms", .integer)
                t.column("sleep_ms", .integer)
            }
            try db.create(index: "power_reports_device", on: "power_reports", columns: ["device_id", "received_at_ms"])
            try db.create(table: "fault_events") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device_id", .text).notNull()
                t.column("device_time_s", .integer)
                t.column("received_at_ms", .integer).notNull()
                t.column("fault_type", .text).notNull()
                t.column("recovery_action", .text)
                t.column("success", .boolean).notNull()
                t.column("details", .text)
                t.column("retry_count", .integer)
            }
            try db.create(index: "fault_events_device", on: "fault_events", columns: ["device_id", "id"])
        }
        migrator.registerMigration("v5-command-expiry-index") { db in
            try db.create(index: "commands_status_expiry", on: "commands", columns: ["status", "expires_at_ms"])
        }
        migrator.registerMigration("v6-ota") { db in
            try db.create(table: "ota_deployments") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("version", .text).notNull()
                t.column("all_devices", .boolean).notNull()
                t.column("status", .text).notNull()  // active | cancelled
                t.column("max_attempts", .integer).notNull()
                t.column("notes", .text)
                t.column("created_at_ms", .integer).notNull()
                t.column("cancelled_at_ms", .integer)
            }
            try db.create(table: "ota_deployment_devices") { t in
                t.column("deployment_id", .integer).notNull().references("ota_deployments", onDelete: .cascade)
                t.column("device_id", .text).notNull()
                t.primaryKey(["deployment_id", "device_id"])
            }
            try db.create(index: "ota_deployment_devices_device", on: "ota_deployment_devices", columns: ["device_id"])
            try db.create(table: "ota_sessions") { t in
                t.primaryKey("session_id", .text)
                t.column("device_id", .text).notNull()
                t.column("version", .text).notNull()
                t.column("deployment_id", .integer)
                t.column("from_version", .text)
                t.column("total_chunks", .integer).notNull()
                t.column("chunks_served", .integer).notNull().defaults(to: 0)
                t.column("bytes_served", .integer).notNull().defaults(to: 0)
                t.column("last_chunk", .integer)
                t.column("phase", .text).notNull()
                t.column("progress", .integer).notNull().defaults(to: 0)
                t.column("started_at_ms", .integer).notNull()
                t.column("updated_at_ms", .integer).notNull()
                t.column("ended_at_ms", .integer)
                t.column("outcome", .text)  // NULL while active
                t.column("message", .text)
                t.column("reported_version", .text)
                t.column("reported_status", .text)
            }
            try db.create(index: "ota_sessions_device", on: "ota_sessions", columns: ["device_id", "started_at_ms"])
            try db.execute(sql: "CREATE INDEX ota_sessions_active ON ota_sessions(device_id) WHERE outcome IS NULL")
            try db.create(table: "ota_events") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("session_id", .text)
                t.column("device_id", .text).notNull()
                t.column("phase", .text).notNull()
                t.column("progress", .integer)
                t.column("message", .text)
                t.column("device_time_s", .integer)
                t.column("received_at_ms", .integer).notNull()
            }
            try db.create(index: "ota_events_session", on: "ota_events", columns: ["session_id", "id"])
        }
        migrator.registerMigration("v7-mqtt-outbox") { db in
            // One row per packet to publish, written in the upload's transaction; the message is built from the stored
            // packet and samples when published. Rows are deleted only after the broker acknowledged them.
            try db.create(table: "mqtt_outbox") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("packet_id", .integer).notNull()
                // The packet's sample rows (ids are consecutive within a transaction); NULL when it has none.
                t.column("first_sample_id", .integer)
                t.column("last_sample_id", .integer)
            }
        }
        migrator.registerMigration("v8-retention") { db in
            // Who may be dropped by the caps: pending ids (no verified upload, not created by an operator) only.
            try db.alter(table: "devices") { t in
                t.add(column: "admission", .text).notNull().defaults(to: "pending")  // pending | verified | operator
            }
            try db.execute(sql: "UPDATE devices SET admission = 'verified' WHERE last_nonce IS NOT NULL OR upload_count > 0")
            try db.execute(
                sql: """
                    UPDATE devices SET admission = 'operator' WHERE admission = 'pending' AND (
                      device_id IN (SELECT device_id FROM device_keys) OR device_id IN (SELECT device_id FROM commands)
                      OR device_id IN (SELECT device_id FROM device_configs WHERE pending_json IS NOT NULL)
                      OR device_id IN (SELECT device_id FROM ota_deployment_devices))
                    """
            )
            try db.execute(sql: "CREATE INDEX devices_pending ON devices(first_seen_ms, device_id) WHERE admission = 'pending'")
            try db.create(table: "retention") { t in
                t.primaryKey("name", .text)
                t.column("rows", .integer).notNull().defaults(to: 0)
                t.column("dropped", .integer).notNull().defaults(to: 0)
            }
            // The tables of this version (a shipped migration never changes with later ones).
            let tables: [BoundedTable] = [.configHistory, .faultEvents, .powerReports, .otaEvents, .otaSessions]
            for name in tables.map(\.rawValue) + [Retention.pendingDevices] {
                try db.execute(sql: "INSERT INTO retention (name) VALUES (?)", arguments: [name])
            }
            try Retention.recount(db, tables: tables)
            // Per-device trimming walks (device_id, id); events without a session are found per device.
            try db.create(index: "power_reports_device_id", on: "power_reports", columns: ["device_id", "id"])
            try db.execute(sql: "CREATE INDEX ota_events_unattached ON ota_events(device_id, id) WHERE session_id IS NULL")
            // A deleted device's last nonce, so that deleting it never reopens replay.
            try db.create(table: "device_tombstones") { t in
                t.primaryKey("device_id", .text)
                t.column("last_nonce", .integer).notNull()
                t.column("deleted_at_ms", .integer).notNull()
            }
            // Device-reported times outside the plausible range are not stored; the flag says one was sent.
            for table in ["power_reports", "fault_events", "ota_events"] {
                try db.alter(table: table) { t in t.add(column: "device_time_invalid", .boolean).notNull().defaults(to: false) }
            }
        }
        migrator.registerMigration("v9-device-binding") { db in
            // The client address of the device's last verified upload: unsigned requests are honoured from it only.
            try db.alter(table: "devices") { t in
                t.add(column: "bound_address", .text)
                t.add(column: "bound_at_ms", .integer)
                t.add(column: "nonce_jumps_refused", .integer).notNull().defaults(to: 0)
                t.add(column: "last_refused_nonce", .integer)
                t.add(column: "last_upload_ms", .integer)  // the last accepted upload (the nonce-jump allowance)
            }
            try db.execute(sql: "UPDATE devices SET last_upload_ms = last_seen_ms WHERE last_nonce IS NOT NULL")
            // A command's result is accepted only from the address it was dispatched to.
            try db.alter(table: "commands") { t in t.add(column: "dispatched_to", .text) }
            // Once-per-boot messages from an address the device is not bound to, held until a verified upload from that
            // address confirms them (or the hold window passes).
            try db.create(table: "held_messages") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device_id", .text).notNull()
                t.column("address", .text).notNull()
                t.column("kind", .text).notNull()  // registration | complete | boot_report
                t.column("body", .text).notNull()
                t.column("received_at_ms", .integer).notNull()
            }
            try db.create(index: "held_messages_device", on: "held_messages", columns: ["device_id", "id"])
            try db.execute(sql: "INSERT INTO retention (name) VALUES ('held_messages')")
        }
        migrator.registerMigration("v10-server-state") { db in
            // What the server remembers about itself between starts (the fleet key's fingerprint).
            try db.create(table: "server_state") { t in
                t.primaryKey("name", .text)
                t.column("value", .text).notNull()
            }
        }
        migrator.registerMigration("v11-packet-serials") { db in
            // Issue 15: a packet stored raw is decoded, or its samples re-timed, by a later upload: found by the
            // device-scoped serial the decoder gave it; its samples are the rows from `first_sample_id` on (one
            // packet's samples are inserted together by the single writer, so their ids are consecutive).
            try db.alter(table: "packets") { t in
                t.add(column: "serial", .integer)
                t.add(column: "first_sample_id", .integer)
                t.add(column: "time_estimated", .boolean).notNull().defaults(to: false)
            }
            try db.execute(sql: "CREATE INDEX packets_device_serial ON packets(device_id, serial) WHERE serial IS NOT NULL")
            try db.alter(table: "samples") { t in t.add(column: "time_estimated", .boolean).notNull().defaults(to: false) }
        }
        migrator.registerMigration("v12-telemetry-chunks") { db in try TelemetryMigration.run(db) }
        migrator.registerMigration("v13-accounts-credentials") { db in try Self.accountsMigration(db) }
        migrator.registerMigration("v14-rollouts") { db in try Self.rolloutsMigration(db) }
        // Issue 22: the version of a device's nonce and decoder state, which commits compare (several instances).
        migrator.registerMigration("v15-state-version") { db in
            try db.alter(table: "devices") { t in t.add(column: "state_version", .integer).notNull().defaults(to: 0) }
        }
        // The halt rules of a resumed rollout count from its resume.
        migrator.registerMigration("v16-rollout-resume") { db in
            try db.alter(table: "rollouts") { t in
                t.add(column: "failed_before_resume", .integer).notNull().defaults(to: 0)
                t.add(column: "finished_before_resume", .integer).notNull().defaults(to: 0)
            }
        }
        return migrator
    }
}
