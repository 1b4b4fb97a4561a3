import GRDB

extension EcoWattDatabase {
    /// v13 (issue 19): operator accounts, sessions, API tokens, the audit chain, and device credentials with a next
    /// key and revocation (replacing `device_keys`, whose rows become current keys).
    static func accountsMigration(_ db: Database) throws {
        try db.create(table: "users") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("name", .text).notNull().unique()
            t.column("role", .text).notNull()
            t.column("password_hash", .text).notNull()
            t.column("disabled", .boolean).notNull().defaults(to: false)
            t.column("created_at_ms", .integer).notNull()
            t.column("updated_at_ms", .integer).notNull()
        }
        try db.create(table: "sessions") { t in
            t.primaryKey("id_hash", .text)
            t.column("user_id", .integer).notNull().references("users", onDelete: .cascade)
            t.column("csrf_token", .text).notNull()
            t.column("created_at_ms", .integer).notNull()
            t.column("last_used_ms", .integer).notNull()
            t.column("expires_at_ms", .integer).notNull()
        }
        try db.create(index: "sessions_user", on: "sessions", columns: ["user_id", "created_at_ms"])
        try db.create(table: "api_tokens") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("user_id", .integer).notNull().references("users", onDelete: .cascade)
            t.column("name", .text).notNull()
            t.column("role", .text).notNull()
            t.column("prefix", .text).notNull()
            t.column("hash", .text).notNull().unique()
            t.column("created_at_ms", .integer).notNull()
            t.column("expires_at_ms", .integer)
            t.column("last_used_at_ms", .integer)
            t.column("revoked_at_ms", .integer)
        }
        try db.create(index: "api_tokens_user", on: "api_tokens", columns: ["user_id"])
        // Append-only by convention and checked by the hash chain: nothing in the server updates or deletes rows.
        try db.create(table: "audit_log") { t in
            t.primaryKey("sequence", .integer)
            t.column("at_ms", .integer).notNull()
            t.column("actor", .text).notNull()
            t.column("role", .text).notNull()
            t.column("action", .text).notNull()
            t.column("target", .text).notNull()
            t.column("body_digest", .text).notNull()
            t.column("outcome", .text).notNull()
            t.column("request_id", .text).notNull()
            t.column("client_address", .text).notNull()
            t.column("previous_hash", .text).notNull()
            t.column("hash", .text).notNull()
        }
        try db.create(table: "device_credentials") { t in
            t.primaryKey("device_id", .text)
            t.column("key_hex", .text)
            t.column("next_key_hex", .text)
            t.column("revoked_at_ms", .integer)
            t.column("updated_at_ms", .integer).notNull()
        }
        try db.execute(
            sql: "INSERT INTO device_credentials (device_id, key_hex, updated_at_ms) SELECT device_id, key_hex, updated_at_ms FROM device_keys"
        )
        try db.drop(table: "device_keys")
        try db.alter(table: "devices") { t in t.add(column: "refused_uploads", .integer).notNull().defaults(to: 0) }
    }
}
