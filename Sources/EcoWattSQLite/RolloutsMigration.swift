import GRDB

extension EcoWattDatabase {
    /// v14 (issue 21): staged rollouts and the state of each targeted device. A device is in at most one open rollout
    /// (checked when one is created); `rollout_devices_device` finds it from the device routes.
    static func rolloutsMigration(_ db: Database) throws {
        try db.create(table: "rollouts") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("version", .text).notNull()
            t.column("status", .text).notNull()
            t.column("settings", .text).notNull()
            t.column("wave_count", .integer).notNull()
            t.column("current_wave", .integer).notNull()
            t.column("wave_opened_at_ms", .integer).notNull()
            t.column("reason", .text)
            t.column("rollback_of", .integer)
            t.column("created_by", .text).notNull()
            t.column("notes", .text)
            t.column("created_at_ms", .integer).notNull()
            t.column("updated_at_ms", .integer).notNull()
        }
        try db.create(index: "rollouts_status", on: "rollouts", columns: ["status", "id"])
        try db.create(table: "rollout_devices") { t in
            t.column("rollout_id", .integer).notNull().references("rollouts", onDelete: .cascade)
            t.column("device_id", .text).notNull()
            t.column("wave", .integer).notNull()
            t.column("state", .text).notNull()
            t.column("reason", .text)
            t.column("from_version", .text)
            t.column("offered_at_ms", .integer)
            t.column("started_at_ms", .integer)
            t.column("installed_at_ms", .integer)
            t.column("finished_at_ms", .integer)
            t.column("healthy_uploads", .integer).notNull().defaults(to: 0)
            t.column("updated_at_ms", .integer).notNull()
            t.primaryKey(["rollout_id", "device_id"])
        }
        try db.create(index: "rollout_devices_device", on: "rollout_devices", columns: ["device_id", "rollout_id"])
    }
}
