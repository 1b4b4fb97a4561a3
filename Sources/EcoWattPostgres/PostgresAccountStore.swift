import EcoWattStorage
import Logging
import PostgresNIO

/// ``AccountStore`` on PostgreSQL (issue 22), safe with several server instances on one database: a write that checks
/// before it changes (a token cap, the sessions kept per user) locks the user's row first, and the audit chain is
/// appended under an advisory lock, so two instances never chain two entries to the same head.
public struct PostgresAccountStore: AccountStore {
    public let database: EcoWattPostgresDatabase
    private var logger: Logger { database.logger }

    public init(database: EcoWattPostgresDatabase) {
        self.database = database
    }

    // MARK: Users

    public func createUser(name: String, role: Role, passwordHash: String, nowMs: Int64) async throws -> UserRecord {
        let rows = try await database.rows(
            """
            INSERT INTO users (name, role, password_hash, created_at_ms, updated_at_ms)
            VALUES (\(name), \(role.rawValue), \(passwordHash), \(nowMs), \(nowMs)) ON CONFLICT (name) DO NOTHING RETURNING *
            """
        )
        guard let row = rows.first else { throw AccountStoreError.duplicateUser(name) }
        return try Self.user(row)
    }

    public func user(named name: String) async throws -> UserRecord? {
        try await database.rows("SELECT * FROM users WHERE name = \(name)").first.map(Self.user)
    }

    public func user(id: Int64) async throws -> UserRecord? {
        try await database.rows("SELECT * FROM users WHERE id = \(id)").first.map(Self.user)
    }

    public func users() async throws -> [UserRecord] {
        try await database.rows("SELECT * FROM users ORDER BY name").map(Self.user)
    }

    public func updateUser(id: Int64, change: UserChange, nowMs: Int64) async throws -> UserRecord? {
        let logger = logger
        return try await database.transaction { connection in
            let rows = try await connection.rows("SELECT * FROM users WHERE id = \(id) FOR UPDATE", logger: logger)
            guard let user = try rows.first.map(Self.user) else { return nil }
            let updated = try await connection.rows(
                """
                UPDATE users SET role = coalesce(\(change.role?.rawValue), role),
                  password_hash = coalesce(\(change.passwordHash), password_hash),
                  disabled = coalesce(\(change.disabled), disabled), updated_at_ms = \(nowMs) WHERE id = \(id) RETURNING *
                """,
                logger: logger
            )
            if change.passwordHash != nil || change.disabled == true || change.role.map({ $0 < user.role }) == true {
                try await connection.execute("DELETE FROM sessions WHERE user_id = \(id)", logger: logger)
            }
            return try updated.first.map(Self.user)
        }
    }

    public func deleteUser(id: Int64) async throws -> Bool {
        // Sessions and tokens go with the user (ON DELETE CASCADE).
        try await !database.rows("DELETE FROM users WHERE id = \(id) RETURNING id").isEmpty
    }

    public func activeAdminCount() async throws -> Int {
        try await database.rows("SELECT count(*) AS n FROM users WHERE role = 'admin' AND NOT disabled").first?.value("n", as: Int.self) ?? 0
    }

    static func user(_ row: PostgresRandomAccessRow) throws -> UserRecord {
        UserRecord(
            id: try row.value("id"),
            name: try row.value("name"),
            role: Role(rawValue: try row.value("role")) ?? .viewer,
            passwordHash: try row.value("password_hash"),
            disabled: try row.value("disabled"),
            createdAtMs: try row.value("created_at_ms"),
            updatedAtMs: try row.value("updated_at_ms")
        )
    }

    // MARK: Sessions

    public func createSession(_ session: SessionRecord, maxPerUser: Int) async throws {
        let logger = logger
        try await database.transaction { connection in
            // The user's row is the lock: two instances logging the same user in keep the cap between them.
            try await connection.execute("SELECT 1 FROM users WHERE id = \(session.userID) FOR UPDATE", logger: logger)
            try await connection.execute(
                """
                INSERT INTO sessions (id_hash, user_id, csrf_token, created_at_ms, last_used_ms, expires_at_ms)
                VALUES (\(session.idHash), \(session.userID), \(session.csrfToken), \(session.createdAtMs),
                  \(session.lastUsedMs), \(session.expiresAtMs))
                """,
                logger: logger
            )
            try await connection.execute(
                """
                DELETE FROM sessions WHERE user_id = \(session.userID) AND id_hash NOT IN (
                  SELECT id_hash FROM sessions WHERE user_id = \(session.userID)
                  ORDER BY created_at_ms DESC, id_hash DESC LIMIT \(max(0, maxPerUser)))
                """,
                logger: logger
            )
        }
    }

    public func session(idHash: String) async throws -> SessionRecord? {
        try await database.rows("SELECT * FROM sessions WHERE id_hash = \(idHash)").first.map { row in
            SessionRecord(
                idHash: try row.value("id_hash"),
                userID: try row.value("user_id"),
                csrfToken: try row.value("csrf_token"),
                createdAtMs: try row.value("created_at_ms"),
                lastUsedMs: try row.value("last_used_ms"),
                expiresAtMs: try row.value("expires_at_ms")
            )
        }
    }

    public func touchSession(idHash: String, nowMs: Int64) async throws {
        try await database.client.execute(
            "UPDATE sessions SET last_used_ms = greatest(last_used_ms, \(nowMs)) WHERE id_hash = \(idHash)",
            logger: logger
        )
    }

    public func deleteSession(idHash: String) async throws {
        try await database.client.execute("DELETE FROM sessions WHERE id_hash = \(idHash)", logger: logger)
    }

    public func pruneSessions(nowMs: Int64, idleBeforeMs: Int64) async throws -> Int {
        try await database.rows(
            """
            WITH ended AS (DELETE FROM sessions WHERE last_used_ms < \(idleBeforeMs) OR expires_at_ms <= \(nowMs) RETURNING 1)
            SELECT count(*) AS n FROM ended
            """
        ).first?.value("n", as: Int.self) ?? 0
    }

    // MARK: Tokens

    public func createToken(_ token: APITokenRecord, maxPerUser: Int) async throws -> APITokenRecord {
        let logger = logger
        return try await database.transaction { connection in
            try await connection.execute("SELECT 1 FROM users WHERE id = \(token.userID) FOR UPDATE", logger: logger)
            let live =
                try await connection.rows(
                    """
                    SELECT count(*) AS n FROM api_tokens WHERE user_id = \(token.userID) AND revoked_at_ms IS NULL
                      AND (expires_at_ms IS NULL OR expires_at_ms > \(token.createdAtMs))
                    """,
                    logger: logger
                ).first?.value("n", as: Int.self) ?? 0
            guard live < maxPerUser else { throw AccountStoreError.tooManyTokens(limit: maxPerUser) }
            let rows = try await connection.rows(
                """
                INSERT INTO api_tokens (user_id, name, role, prefix, hash, created_at_ms, expires_at_ms)
                VALUES (\(token.userID), \(token.name), \(token.role.rawValue), \(token.prefix), \(token.hash),
                  \(token.createdAtMs), \(token.expiresAtMs)) RETURNING id
                """,
                logger: logger
            )
            var stored = token
            stored.id = try rows.first?.value("id") ?? 0
            return stored
        }
    }

    public func token(hash: String) async throws -> APITokenRecord? {
        try await database.rows("SELECT * FROM api_tokens WHERE hash = \(hash)").first.map(Self.token)
    }

    public func token(id: Int64) async throws -> APITokenRecord? {
        try await database.rows("SELECT * FROM api_tokens WHERE id = \(id)").first.map(Self.token)
    }

    public func tokens(userID: Int64?) async throws -> [APITokenRecord] {
        try await database.rows(
            "SELECT * FROM api_tokens WHERE (\(userID)::bigint IS NULL OR user_id = \(userID)) ORDER BY id DESC"
        ).map(Self.token)
    }

    public func revokeToken(id: Int64, nowMs: Int64) async throws -> APITokenRecord? {
        try await database.rows(
            "UPDATE api_tokens SET revoked_at_ms = coalesce(revoked_at_ms, \(nowMs)) WHERE id = \(id) RETURNING *"
        ).first.map(Self.token)
    }

    public func markTokenUsed(id: Int64, nowMs: Int64) async throws -> Bool {
        // The row lock makes the read of the previous use and the write one step: of two instances recording the
        // first use at once, one reports it.
        try await database.rows(
            """
            WITH previous AS (SELECT last_used_at_ms FROM api_tokens WHERE id = \(id) FOR UPDATE)
            UPDATE api_tokens SET last_used_at_ms = greatest(coalesce(api_tokens.last_used_at_ms, \(nowMs)), \(nowMs))
            FROM previous WHERE id = \(id) RETURNING previous.last_used_at_ms IS NULL AS first
            """
        ).first?.value("first", as: Bool.self) ?? false
    }

    static func token(_ row: PostgresRandomAccessRow) throws -> APITokenRecord {
        APITokenRecord(
            id: try row.value("id"),
            userID: try row.value("user_id"),
            name: try row.value("name"),
            role: Role(rawValue: try row.value("role")) ?? .viewer,
            prefix: try row.value("prefix"),
            hash: try row.value("hash"),
            createdAtMs: try row.value("created_at_ms"),
            expiresAtMs: try row.value("expires_at_ms"),
            lastUsedAtMs: try row.value("last_used_at_ms"),
            revokedAtMs: try row.value("revoked_at_ms")
        )
    }

    // MARK: Bootstrap token

    public func bootstrapTokenRevoked() async throws -> Bool {
        try await !database.rows("SELECT 1 FROM server_state WHERE name = 'bootstrap_token_revoked_at_ms'").isEmpty
    }

    public func revokeBootstrapToken(nowMs: Int64) async throws {
        try await database.client.execute(
            "INSERT INTO server_state (name, value) VALUES ('bootstrap_token_revoked_at_ms', \(String(nowMs))) ON CONFLICT DO NOTHING",
            logger: logger
        )
    }

    // MARK: Audit

    public func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry {
        let logger = logger
        return try await database.transaction { connection in
            // One chain for every instance: the lock orders the appends, and the head is read after it is taken.
            try await connection.execute("SELECT pg_advisory_xact_lock(\(PostgresMigrations.Lock.auditChain.rawValue))", logger: logger)
            let head = try await connection.rows("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1", logger: logger)
                .first
            let entry = AuditEntry.chained(
                sequence: (try head?.value("sequence", as: Int64.self) ?? 0) + 1,
                draft: draft,
                previousHash: try head?.value("hash", as: String.self) ?? AuditEntry.genesis
            )
            try await connection.execute(
                """
                INSERT INTO audit_log (sequence, at_ms, actor, role, action, target, body_digest, outcome, request_id,
                  client_address, previous_hash, hash)
                VALUES (\(entry.sequence), \(draft.atMs), \(draft.actor), \(draft.role), \(draft.action), \(draft.target),
                  \(draft.bodyDigest), \(draft.outcome), \(draft.requestID), \(draft.clientAddress), \(entry.previousHash),
                  \(entry.hash))
                """,
                logger: logger
            )
            return entry
        }
    }

    public func auditEntries(filter: AuditFilter, before: Int64?, limit: Int) async throws -> [AuditEntry] {
        try await database.rows(
            """
            SELECT * FROM audit_log WHERE sequence < \(before ?? .max)
              AND (\(filter.actor)::text IS NULL OR actor = \(filter.actor))
              AND (\(filter.action)::text IS NULL OR action = \(filter.action))
              AND (\(filter.target)::text IS NULL OR target = \(filter.target))
              AND (\(filter.sinceMs)::bigint IS NULL OR at_ms >= \(filter.sinceMs))
            ORDER BY sequence DESC LIMIT \(max(0, limit))
            """
        ).map(Self.audit)
    }

    public func auditEntries(after: Int64, limit: Int) async throws -> [AuditEntry] {
        try await database.rows("SELECT * FROM audit_log WHERE sequence > \(after) ORDER BY sequence LIMIT \(max(0, limit))")
            .map(Self.audit)
    }

    static func audit(_ row: PostgresRandomAccessRow) throws -> AuditEntry {
        AuditEntry(
            sequence: try row.value("sequence"),
            draft: AuditDraft(
                atMs: try row.value("at_ms"),
                actor: try row.value("actor"),
                role: try row.value("role"),
                action: try row.value("action"),
                target: try row.value("target"),
                bodyDigest: try row.value("body_digest"),
                outcome: try row.value("outcome"),
                requestID: try row.value("request_id"),
                clientAddress: try row.value("client_address")
            ),
            previousHash: try row.value("previous_hash"),
            hash: try row.value("hash")
        )
    }
}
