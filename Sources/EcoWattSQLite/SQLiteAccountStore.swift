import EcoWattStorage
import Foundation
import GRDB

/// ``AccountStore`` on SQLite (issue 19); every write goes through the ``GroupCommitWriter``, so audit entries are
/// chained one after another by the single writer.
public struct SQLiteAccountStore: AccountStore {
    public let database: EcoWattDatabase
    public let writer: GroupCommitWriter

    public init(database: EcoWattDatabase, writer: GroupCommitWriter) {
        self.database = database
        self.writer = writer
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await database.pool.read(body)
    }

    // MARK: Users

    public func createUser(name: String, role: Role, passwordHash: String, nowMs: Int64) async throws -> UserRecord {
        try await writer.write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM users WHERE name = ?"), arguments: [name]) == nil else {
                throw AccountStoreError.duplicateUser(name)
            }
            try db.cachedStatement(
                sql: "INSERT INTO users (name, role, password_hash, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?)"
            ).execute(
                arguments: [name, role.rawValue, passwordHash, nowMs, nowMs]
            )
            return UserRecord(
                id: db.lastInsertedRowID,
                name: name,
                role: role,
                passwordHash: passwordHash,
                disabled: false,
                createdAtMs: nowMs,
                updatedAtMs: nowMs
            )
        }
    }

    public func user(named name: String) async throws -> UserRecord? {
        try await read { db in try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM users WHERE name = ?"), arguments: [name]).map(Self.user) }
    }

    public func user(id: Int64) async throws -> UserRecord? {
        try await read { db in try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM users WHERE id = ?"), arguments: [id]).map(Self.user) }
    }

    public func users() async throws -> [UserRecord] {
        try await read { db in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM users ORDER BY name")).map(Self.user) }
    }

    public func updateUser(id: Int64, change: UserChange, nowMs: Int64) async throws -> UserRecord? {
        try await writer.write { db in
            guard let user = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM users WHERE id = ?"), arguments: [id]).map(Self.user) else {
                return nil
            }
            try db.cachedStatement(
                sql: """
                    UPDATE users SET role = coalesce(?, role), password_hash = coalesce(?, password_hash),
                      disabled = coalesce(?, disabled), updated_at_ms = ? WHERE id = ?
                    """
            ).execute(
                arguments: [change.role?.rawValue, change.passwordHash, change.disabled, nowMs, id]
            )
            if change.passwordHash != nil || change.disabled == true || change.role.map({ $0 < user.role }) == true {
                try db.cachedStatement(sql: "DELETE FROM sessions WHERE user_id = ?").execute(arguments: [id])
            }
            return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM users WHERE id = ?"), arguments: [id]).map(Self.user)
        }
    }

    public func deleteUser(id: Int64) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(sql: "DELETE FROM sessions WHERE user_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM api_tokens WHERE user_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM users WHERE id = ?").execute(arguments: [id])
            return db.changesCount > 0
        }
    }

    public func activeAdminCount() async throws -> Int {
        try await read { db in try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled")) ?? 0 }
    }

    static func user(_ row: Row) -> UserRecord {
        UserRecord(
            id: row["id"],
            name: row["name"],
            role: Role(rawValue: row["role"]) ?? .viewer,
            passwordHash: row["password_hash"],
            disabled: row["disabled"],
            createdAtMs: row["created_at_ms"],
            updatedAtMs: row["updated_at_ms"]
        )
    }

    // MARK: Sessions

    public func createSession(_ session: SessionRecord, maxPerUser: Int) async throws {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO sessions (id_hash, user_id, csrf_token, created_at_ms, last_used_ms, expires_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    session.idHash, session.userID, session.csrfToken, session.createdAtMs, session.lastUsedMs, session.expiresAtMs,
                ]
            )
            try db.cachedStatement(
                sql: """
                    DELETE FROM sessions WHERE user_id = ?1 AND id_hash NOT IN (
                      SELECT id_hash FROM sessions WHERE user_id = ?1 ORDER BY created_at_ms DESC, id_hash DESC LIMIT ?2)
                    """
            ).execute(
                arguments: [session.userID, maxPerUser]
            )
        }
    }

    public func session(idHash: String) async throws -> SessionRecord? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM sessions WHERE id_hash = ?"), arguments: [idHash]).map { row in
                SessionRecord(
                    idHash: row["id_hash"],
                    userID: row["user_id"],
                    csrfToken: row["csrf_token"],
                    createdAtMs: row["created_at_ms"],
                    lastUsedMs: row["last_used_ms"],
                    expiresAtMs: row["expires_at_ms"]
                )
            }
        }
    }

    public func touchSession(idHash: String, nowMs: Int64) async throws {
        try await writer.write { db in
            try db.cachedStatement(
                sql: "UPDATE sessions SET last_used_ms = max(last_used_ms, ?) WHERE id_hash = ?"
            ).execute(
                arguments: [nowMs, idHash]
            )
        }
    }

    public func deleteSession(idHash: String) async throws {
        try await writer.write { db in try db.cachedStatement(sql: "DELETE FROM sessions WHERE id_hash = ?").execute(arguments: [idHash]) }
    }

    public func pruneSessions(nowMs: Int64, idleBeforeMs: Int64) async throws -> Int {
        try await writer.write { db in
            try db.cachedStatement(
                sql: "DELETE FROM sessions WHERE last_used_ms < ? OR expires_at_ms <= ?"
            ).execute(
                arguments: [idleBeforeMs, nowMs]
            )
            return db.changesCount
        }
    }

    // MARK: Tokens

    public func createToken(_ token: APITokenRecord, maxPerUser: Int) async throws -> APITokenRecord {
        try await writer.write { db in
            let live =
                try Int.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT COUNT(*) FROM api_tokens WHERE user_id = ? AND revoked_at_ms IS NULL
                              AND (expires_at_ms IS NULL OR expires_at_ms > ?)
                            """
                    ),
                    arguments: [token.userID, token.createdAtMs]
                ) ?? 0
            guard live < maxPerUser else { throw AccountStoreError.tooManyTokens(limit: maxPerUser) }
            try db.cachedStatement(
                sql: """
                    INSERT INTO api_tokens (user_id, name, role, prefix, hash, created_at_ms, expires_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [token.userID, token.name, token.role.rawValue, token.prefix, token.hash, token.createdAtMs, token.expiresAtMs]
            )
            var stored = token
            stored.id = db.lastInsertedRowID
            return stored
        }
    }

    public func token(hash: String) async throws -> APITokenRecord? {
        try await read { db in try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM api_tokens WHERE hash = ?"), arguments: [hash]).map(Self.token)
        }
    }

    public func token(id: Int64) async throws -> APITokenRecord? {
        try await read { db in try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM api_tokens WHERE id = ?"), arguments: [id]).map(Self.token) }
    }

    public func tokens(userID: Int64?) async throws -> [APITokenRecord] {
        try await read { db in
            if let userID {
                return try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM api_tokens WHERE user_id = ? ORDER BY id DESC"), arguments: [userID])
                    .map(Self.token)
            }
            return try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM api_tokens ORDER BY id DESC")).map(Self.token)
        }
    }

    public func revokeToken(id: Int64, nowMs: Int64) async throws -> APITokenRecord? {
        try await writer.write { db in
            try db.cachedStatement(
                sql: "UPDATE api_tokens SET revoked_at_ms = coalesce(revoked_at_ms, ?) WHERE id = ?"
            ).execute(
                arguments: [nowMs, id]
            )
            return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM api_tokens WHERE id = ?"), arguments: [id]).map(Self.token)
        }
    }

    public func markTokenUsed(id: Int64, nowMs: Int64) async throws -> Bool {
        try await writer.write { db in
            let first =
                try Bool.fetchOne(db.cachedStatement(sql: "SELECT last_used_at_ms IS NULL FROM api_tokens WHERE id = ?"), arguments: [id]) ?? false
            try db.cachedStatement(
                sql: "UPDATE api_tokens SET last_used_at_ms = max(coalesce(last_used_at_ms, ?1), ?1) WHERE id = ?2"
            ).execute(
                arguments: [nowMs, id]
            )
            return first
        }
    }

    static func token(_ row: Row) -> APITokenRecord {
        APITokenRecord(
            id: row["id"],
            userID: row["user_id"],
            name: row["name"],
            role: Role(rawValue: row["role"]) ?? .viewer,
            prefix: row["prefix"],
            hash: row["hash"],
            createdAtMs: row["created_at_ms"],
            expiresAtMs: row["expires_at_ms"],
            lastUsedAtMs: row["last_used_at_ms"],
            revokedAtMs: row["revoked_at_ms"]
        )
    }

    // MARK: Bootstrap token

    public func bootstrapTokenRevoked() async throws -> Bool {
        try await read { db in
            try String.fetchOne(db.cachedStatement(sql: "SELECT value FROM server_state WHERE name = 'bootstrap_token_revoked_at_ms'")) != nil
        }
    }

    public func revokeBootstrapToken(nowMs: Int64) async throws {
        try await writer.write { db in
            try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO server_state (name, value) VALUES ('bootstrap_token_revoked_at_ms', ?)"
            ).execute(
                arguments: ["\(nowMs)"]
            )
        }
    }

    // MARK: Audit

    public func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry {
        try await writer.write { db in
            let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1"))
            let entry = AuditEntry.chained(
                sequence: (last?["sequence"] as Int64? ?? 0) + 1,
                draft: draft,
                previousHash: last?["hash"] as String? ?? AuditEntry.genesis
            )
            try db.cachedStatement(
                sql: """
                    INSERT INTO audit_log (sequence, at_ms, actor, role, action, target, body_digest, outcome, request_id,
                      client_address, previous_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    entry.sequence, draft.atMs, draft.actor, draft.role, draft.action, draft.target, draft.bodyDigest, draft.outcome,
                    draft.requestID, draft.clientAddress, entry.previousHash, entry.hash,
                ]
            )
            return entry
        }
    }

    public func auditEntries(filter: AuditFilter, before: Int64?, limit: Int) async throws -> [AuditEntry] {
        try await read { db in
            var sql = "SELECT * FROM audit_log WHERE sequence < ?"
            var arguments: StatementArguments = [before ?? .max]
            if let actor = filter.actor {
                sql += " AND actor = ?"
                arguments += [actor]
            }
            if let action = filter.action {
                sql += " AND action = ?"
                arguments += [action]
            }
            if let target = filter.target {
                sql += " AND target = ?"
                arguments += [target]
            }
            if let since = filter.sinceMs {
                sql += " AND at_ms >= ?"
                arguments += [since]
            }
            sql += " ORDER BY sequence DESC LIMIT ?"
            arguments += [max(0, limit)]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.audit)
        }
    }

    public func auditEntries(after: Int64, limit: Int) async throws -> [AuditEntry] {
        try await read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT * FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT ?"
                ),
                arguments: [after, max(0, limit)]
            ).map(Self.audit)
        }
    }

    static func audit(_ row: Row) -> AuditEntry {
        AuditEntry(
            sequence: row["sequence"],
            draft: AuditDraft(
                atMs: row["at_ms"],
                actor: row["actor"],
                role: row["role"],
                action: row["action"],
                target: row["target"],
                bodyDigest: row["body_digest"],
                outcome: row["outcome"],
                requestID: row["request_id"],
                clientAddress: row["client_address"]
            ),
            previousHash: row["previous_hash"],
            hash: row["hash"]
        )
    }
}
