import Logging
import PostgresNIO

/// The PostgreSQL schema, as numbered migrations recorded in `schema_migrations`. Its own numbering, not SQLite's: the
/// backends share records and contract tests, not DDL.
enum PostgresMigrations {
    struct Migration {
        let version: Int
        let name: String
        let statements: [String]
    }

    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "accounts",
            statements: [
                """
                CREATE TABLE users (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE, role text NOT NULL,
                  password_hash text NOT NULL, disabled boolean NOT NULL DEFAULT false, created_at_ms bigint NOT NULL,
                  updated_at_ms bigint NOT NULL)
                """,
                """
                CREATE TABLE sessions (
                  id_hash text PRIMARY KEY, user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
                  csrf_token text NOT NULL, created_at_ms bigint NOT NULL, last_used_ms bigint NOT NULL,
                  expires_at_ms bigint NOT NULL)
                """,
                "CREATE INDEX sessions_user ON sessions (user_id, created_at_ms)",
                """
                CREATE TABLE api_tokens (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
                  name text NOT NULL, role text NOT NULL, prefix text NOT NULL, hash text NOT NULL UNIQUE,
                  created_at_ms bigint NOT NULL, expires_at_ms bigint, last_used_at_ms bigint, revoked_at_ms bigint)
                """,
                "CREATE INDEX api_tokens_user ON api_tokens (user_id)",
                // Append-only by convention and checked by the hash chain: nothing in the server updates or deletes rows.
                """
                CREATE TABLE audit_log (
                  sequence bigint PRIMARY KEY, at_ms bigint NOT NULL, actor text NOT NULL, role text NOT NULL,
                  action text NOT NULL, target text NOT NULL, body_digest text NOT NULL, outcome text NOT NULL,
                  request_id text NOT NULL, client_address text NOT NULL, previous_hash text NOT NULL, hash text NOT NULL)
                """,
                "CREATE TABLE server_state (name text PRIMARY KEY, value text NOT NULL)",
            ]
        ),
        Migration(
            version: 2,
            name: "telemetry",
            statements: [
                // The registry row of a device, which ingest keeps (the registry columns are the operator's). Ids
                // compare bytewise ("C"), as on SQLite, whatever the database's locale: pages follow the id order.
                """
                CREATE TABLE devices (
                  device_id text COLLATE "C" PRIMARY KEY, first_seen_ms bigint NOT NULL, last_seen_ms bigint NOT NULL,
                  upload_count bigint NOT NULL DEFAULT 0, last_nonce bigint, stream_state bytea, device_name text,
                  location text, description text, firmware_version text, registered_at_ms bigint,
                  admission text NOT NULL DEFAULT 'pending', bound_address text, bound_at_ms bigint,
                  nonce_jumps_refused bigint NOT NULL DEFAULT 0, last_refused_nonce bigint, last_upload_ms bigint,
                  open_chunk bigint, rollup_from_ms bigint, rollup_to_ms bigint, rollup_floor_ms bigint,
                  refused_uploads bigint NOT NULL DEFAULT 0, state_version bigint NOT NULL DEFAULT 0)
                """,
                "CREATE INDEX devices_pending ON devices (first_seen_ms, device_id) WHERE admission = 'pending'",
                "CREATE INDEX devices_rollup_changed ON devices (device_id) WHERE rollup_from_ms IS NOT NULL",
                // A deleted device's last nonce: deleting a device never reopens replay.
                "CREATE TABLE device_tombstones (device_id text PRIMARY KEY, last_nonce bigint NOT NULL, deleted_at_ms bigint NOT NULL)",
                // Row counts of the bounded sets (no count(*) on the hot path), as in SQLite.
                "CREATE TABLE retention (name text PRIMARY KEY, rows bigint NOT NULL DEFAULT 0, dropped bigint NOT NULL DEFAULT 0)",
                "INSERT INTO retention (name) VALUES ('pending_devices')",
                """
                CREATE TABLE telemetry_chunks (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id text NOT NULL, first_ms bigint NOT NULL,
                  last_ms bigint NOT NULL, body bytea NOT NULL)
                """,
                "CREATE INDEX telemetry_chunks_device_time ON telemetry_chunks (device_id, last_ms, first_ms)",
                """
                CREATE TABLE telemetry_refs (
                  device_id text NOT NULL, serial bigint NOT NULL, packet_id bigint NOT NULL, PRIMARY KEY (device_id, serial))
                """,
                "CREATE INDEX telemetry_refs_packet ON telemetry_refs (packet_id)",
                """
                CREATE TABLE telemetry_rollups (
                  device_id text NOT NULL, resolution text NOT NULL, bucket_ms bigint NOT NULL, stats bytea NOT NULL,
                  PRIMARY KEY (device_id, resolution, bucket_ms))
                """,
                "CREATE INDEX telemetry_rollups_age ON telemetry_rollups (resolution, bucket_ms)",
                "CREATE TABLE mqtt_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, packet_id bigint NOT NULL)",
                """
                CREATE TABLE device_credentials (
                  device_id text PRIMARY KEY, key_hex text, next_key_hex text, revoked_at_ms bigint, updated_at_ms bigint NOT NULL)
                """,
            ]
        ),
        Migration(
            version: 3,
            name: "commands",
            statements: [
                """
                CREATE TABLE commands (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, command_id text NOT NULL UNIQUE, device_id text NOT NULL,
                  action text NOT NULL, target_register text, register_address bigint, value bigint, status text NOT NULL,
                  idempotency_key text, created_at_ms bigint NOT NULL, expires_at_ms bigint, dispatched_at_ms bigint,
                  finished_at_ms bigint, result_status text, executed_at text, result_json text, error_msg text,
                  dispatched_to text)
                """,
                "CREATE INDEX commands_device_status ON commands (device_id, status, id)",
                "CREATE INDEX commands_status_dispatched ON commands (status, dispatched_at_ms)",
                "CREATE INDEX commands_status_expiry ON commands (status, expires_at_ms)",
                "CREATE UNIQUE INDEX commands_idempotency ON commands (device_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
            ]
        ),
        Migration(
            version: 4,
            name: "device reports, configuration, OTA, rollouts",
            statements: [
                """
                CREATE TABLE device_configs (
                  device_id text PRIMARY KEY, running_json text, running_at_ms bigint, pending_json text,
                  pending_created_at_ms bigint, pending_delivered_at_ms bigint)
                """,
                """
                CREATE TABLE config_history (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id text NOT NULL, event text NOT NULL,
                  config_json text, detail text, created_at_ms bigint NOT NULL)
                """,
                "CREATE INDEX config_history_device ON config_history (device_id, id)",
                """
                CREATE TABLE power_reports (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id text NOT NULL, device_time_ms bigint,
                  received_at_ms bigint NOT NULL, enabled boolean, techniques bigint, avg_current_ma double precision,
                  energy_saved_mah double precision, peripheral_savings_mah double precision, uptime_ms bigint,
                  high_perf_ms bigint, normal_ms bigint, low_power_ms bigint, sleep_ms bigint,
                  device_time_invalid boolean NOT NULL DEFAULT false)
                """,
                "CREATE INDEX power_reports_device ON power_reports (device_id, received_at_ms)",
                "CREATE INDEX power_reports_device_id ON power_reports (device_id, id)",
                """
                CREATE TABLE fault_events (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id text NOT NULL, device_time_s bigint,
                  received_at_ms bigint NOT NULL, fault_type text NOT NULL, recovery_action text, success boolean NOT NULL,
                  details text, retry_count bigint, device_time_invalid boolean NOT NULL DEFAULT false)
                """,
                "CREATE INDEX fault_events_device ON fault_events (device_id, id)",
                // `seq` is the order sessions were stored in (SQLite's rowid).
                """
                CREATE TABLE ota_sessions (
                  session_id text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, device_id text NOT NULL,
                  version text NOT NULL, deployment_id bigint, from_version text, total_chunks bigint NOT NULL,
                  chunks_served bigint NOT NULL DEFAULT 0, bytes_served bigint NOT NULL DEFAULT 0, last_chunk bigint,
                  phase text NOT NULL, progress bigint NOT NULL DEFAULT 0, started_at_ms bigint NOT NULL,
                  updated_at_ms bigint NOT NULL, ended_at_ms bigint, outcome text, message text, reported_version text,
                  reported_status text)
                """,
                "CREATE INDEX ota_sessions_device ON ota_sessions (device_id, started_at_ms)",
                // At most one open session per device, whichever instance opened it.
                "CREATE UNIQUE INDEX ota_sessions_active ON ota_sessions (device_id) WHERE outcome IS NULL",
                """
                CREATE TABLE ota_events (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, session_id text, device_id text NOT NULL,
                  phase text NOT NULL, progress bigint, message text, device_time_s bigint, received_at_ms bigint NOT NULL,
                  device_time_invalid boolean NOT NULL DEFAULT false)
                """,
                "CREATE INDEX ota_events_session ON ota_events (session_id, id)",
                "CREATE INDEX ota_events_unattached ON ota_events (device_id, id) WHERE session_id IS NULL",
                """
                CREATE TABLE held_messages (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id text NOT NULL, address text NOT NULL,
                  kind text NOT NULL, body text NOT NULL, received_at_ms bigint NOT NULL)
                """,
                "CREATE INDEX held_messages_device ON held_messages (device_id, id)",
                """
                CREATE TABLE rollouts (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, version text NOT NULL, status text NOT NULL,
                  settings text NOT NULL, wave_count bigint NOT NULL, current_wave bigint NOT NULL,
                  wave_opened_at_ms bigint NOT NULL, reason text, rollback_of bigint, created_by text NOT NULL, notes text,
                  created_at_ms bigint NOT NULL, updated_at_ms bigint NOT NULL)
                """,
                "CREATE INDEX rollouts_status ON rollouts (status, id)",
                """
                CREATE TABLE rollout_devices (
                  rollout_id bigint NOT NULL REFERENCES rollouts ON DELETE CASCADE, device_id text COLLATE "C" NOT NULL,
                  wave bigint NOT NULL, state text NOT NULL, reason text, from_version text, offered_at_ms bigint,
                  started_at_ms bigint, installed_at_ms bigint, finished_at_ms bigint,
                  healthy_uploads bigint NOT NULL DEFAULT 0, updated_at_ms bigint NOT NULL, PRIMARY KEY (rollout_id, device_id))
                """,
                "CREATE INDEX rollout_devices_device ON rollout_devices (device_id, rollout_id)",
                // Deployments as an older server stored them (adopted as rollouts at start, see RolloutService).
                """
                CREATE TABLE ota_deployments (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, version text NOT NULL, all_devices boolean NOT NULL,
                  status text NOT NULL, max_attempts bigint NOT NULL, notes text, created_at_ms bigint NOT NULL,
                  cancelled_at_ms bigint)
                """,
                """
                CREATE TABLE ota_deployment_devices (
                  deployment_id bigint NOT NULL REFERENCES ota_deployments ON DELETE CASCADE, device_id text NOT NULL,
                  PRIMARY KEY (deployment_id, device_id))
                """,
                """
                INSERT INTO retention (name) VALUES ('config_history'), ('fault_events'), ('power_reports'), ('ota_events'),
                  ('ota_sessions'), ('held_messages')
                """,
            ]
        ),
        Migration(
            version: 5,
            name: "firmware images and diagnostics",
            statements: [
                // Every instance serves every image (each keeps the chunk replies of what it serves in memory).
                """
                CREATE TABLE firmware_images (
                  version text COLLATE "C" PRIMARY KEY, manifest bytea NOT NULL, ciphertext bytea NOT NULL,
                  created_at_ms bigint NOT NULL)
                """,
                // One row per JSONL line; per-device totals beside them, so that the budgets cost no scan.
                """
                CREATE TABLE diagnostics (
                  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id text COLLATE "C" NOT NULL, line bytea NOT NULL,
                  received_at text NOT NULL)
                """,
                "CREATE INDEX diagnostics_device ON diagnostics (device_id, id)",
                """
                CREATE TABLE diagnostics_devices (
                  device_id text COLLATE "C" PRIMARY KEY, entries bigint NOT NULL, bytes bigint NOT NULL)
                """,
                "CREATE TABLE diagnostics_usage (id int PRIMARY KEY CHECK (id = 1), bytes bigint NOT NULL, dropped bigint NOT NULL)",
                "INSERT INTO diagnostics_usage VALUES (1, 0, 0)",
            ]
        ),
        Migration(
            version: 6,
            name: "rollout resume baseline",
            statements: [
                // The halt rules of a resumed rollout count from its resume.
                """
                ALTER TABLE rollouts ADD COLUMN failed_before_resume bigint NOT NULL DEFAULT 0,
                  ADD COLUMN finished_before_resume bigint NOT NULL DEFAULT 0
                """
            ]
        ),
    ]

    /// Locks that serialise work across instances (`pg_advisory_xact_lock` keys, released at commit).
    enum Lock: Int64 {
        case migrations = 0x4563_6f57_6174_7401
        case auditChain = 0x4563_6f57_6174_7402
        case rolloutMembership = 0x4563_6f57_6174_7403
        /// Taken by every transaction that queues MQTT messages, until it commits: outbox ids commit in the order they
        /// were given, so a drainer that has read up to an id never meets a smaller one later.
        case outboxOrder = 0x4563_6f57_6174_7404
        /// Held (on a connection of its own) by the one instance that drains the MQTT outbox.
        case outboxDrain = 0x4563_6f57_6174_7405
    }

    /// Brings the schema up to date in one transaction. Instances that start at once wait on an advisory lock, so each
    /// migration runs once; a failed migration leaves the schema as it was.
    static func migrate(_ database: EcoWattPostgresDatabase) async throws -> [Int] {
        let logger = database.logger
        return try await database.transaction { connection in
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Lock.migrations.rawValue))", logger: logger)
            try await connection.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """,
                logger: logger
            )
            let applied = Set(
                try await connection.rows("SELECT version FROM schema_migrations", logger: logger).map { try $0.value("version", as: Int.self) }
            )
            var ran: [Int] = []
            for migration in all where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.execute(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger
                )
                ran.append(migration.version)
            }
            if !ran.isEmpty { logger.info("PostgreSQL schema migrated", metadata: ["versions": "\(ran)"]) }
            return ran
        }
    }
}

extension EcoWattPostgresDatabase {
    /// Applies the migrations this database lacks; returns their versions.
    @discardableResult
    public func migrate() async throws -> [Int] { try await PostgresMigrations.migrate(self) }
}
