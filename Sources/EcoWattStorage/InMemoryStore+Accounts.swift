/// The account tables of ``InMemoryStore`` (the SQLite store's `users`, `sessions`, `api_tokens`, `audit_log`).
struct AccountTables {
    var users: [Int64: UserRecord] = [:]
    var nextUserID: Int64 = 1
    var sessions: [String: SessionRecord] = [:]
    var tokens: [Int64: APITokenRecord] = [:]
    var nextTokenID: Int64 = 1
    var bootstrapRevoked = false
    var audit: [AuditEntry] = []

    mutating func endSessions(of userID: Int64) {
        sessions = sessions.filter { $0.value.userID != userID }
    }
}

/// ``AccountStore`` in memory.
extension InMemoryStore {
    public func createUser(name: String, role: Role, passwordHash: String, nowMs: Int64) async throws -> UserRecord {
        try state.withLock { state in
            guard !state.accounts.users.values.contains(where: { $0.name == name }) else { throw AccountStoreError.duplicateUser(name) }
            let user = UserRecord(
                id: state.accounts.nextUserID,
                name: name,
                role: role,
                passwordHash: passwordHash,
                disabled: false,
                createdAtMs: nowMs,
                updatedAtMs: nowMs
            )
            state.accounts.nextUserID += 1
            state.accounts.users[user.id] = user
            return user
        }
    }

    public func user(named name: String) async throws -> UserRecord? {
        state.withLock { $0.accounts.users.values.first { $0.name == name } }
    }

    public func user(id: Int64) async throws -> UserRecord? {
        state.withLock { $0.accounts.users[id] }
    }

    public func users() async throws -> [UserRecord] {
        state.withLock { $0.accounts.users.values.sorted { $0.name < $1.name } }
    }

    public func updateUser(id: Int64, change: UserChange, nowMs: Int64) async throws -> UserRecord? {
        state.withLock { state in
            guard var user = state.accounts.users[id] else { return nil }
            let endsSessions =
                change.passwordHash != nil || change.disabled == true || change.role.map { $0 < user.role } == true
            if let role = change.role { user.role = role }
            if let hash = change.passwordHash { user.passwordHash = hash }
            if let disabled = change.disabled { user.disabled = disabled }
            user.updatedAtMs = nowMs
            state.accounts.users[id] = user
            if endsSessions { state.accounts.endSessions(of: id) }
            return user
        }
    }

    public func deleteUser(id: Int64) async throws -> Bool {
        state.withLock { state in
            guard state.accounts.users.removeValue(forKey: id) != nil else { return false }
            state.accounts.endSessions(of: id)
            state.accounts.tokens = state.accounts.tokens.filter { $0.value.userID != id }
            return true
        }
    }

    public func activeAdminCount() async throws -> Int {
        state.withLock { $0.accounts.users.values.count { $0.role == .admin && !$0.disabled } }
    }

    public func createSession(_ session: SessionRecord, maxPerUser: Int) async throws {
        state.withLock { state in
            state.accounts.sessions[session.idHash] = session
            let mine = state.accounts.sessions.values.filter { $0.userID == session.userID }
                .sorted { ($0.createdAtMs, $0.idHash) < ($1.createdAtMs, $1.idHash) }
            for old in mine.prefix(max(0, mine.count - maxPerUser)) { state.accounts.sessions[old.idHash] = nil }
        }
    }

    public func session(idHash: String) async throws -> SessionRecord? {
        state.withLock { $0.accounts.sessions[idHash] }
    }

    public func touchSession(idHash: String, nowMs: Int64) async throws {
        state.withLock { state in
            if let used = state.accounts.sessions[idHash]?.lastUsedMs { state.accounts.sessions[idHash]?.lastUsedMs = max(used, nowMs) }
        }
    }

    public func deleteSession(idHash: String) async throws {
        _ = state.withLock { $0.accounts.sessions.removeValue(forKey: idHash) }
    }

    public func pruneSessions(nowMs: Int64, idleBeforeMs: Int64) async throws -> Int {
        state.withLock { state in
            let before = state.accounts.sessions.count
            state.accounts.sessions = state.accounts.sessions.filter { $0.value.lastUsedMs >= idleBeforeMs && $0.value.expiresAtMs > nowMs }
            return before - state.accounts.sessions.count
        }
    }

    public func createToken(_ token: APITokenRecord, maxPerUser: Int) async throws -> APITokenRecord {
        try state.withLock { state in
            let live = state.accounts.tokens.values.count {
                $0.userID == token.userID && $0.revokedAtMs == nil && ($0.expiresAtMs ?? .max) > token.createdAtMs
            }
            guard live < maxPerUser else { throw AccountStoreError.tooManyTokens(limit: maxPerUser) }
            var stored = token
            stored.id = state.accounts.nextTokenID
            state.accounts.nextTokenID += 1
            state.accounts.tokens[stored.id] = stored
            return stored
        }
    }

    public func token(hash: String) async throws -> APITokenRecord? {
        state.withLock { $0.accounts.tokens.values.first { $0.hash == hash } }
    }

    public func token(id: Int64) async throws -> APITokenRecord? {
        state.withLock { $0.accounts.tokens[id] }
    }

    public func tokens(userID: Int64?) async throws -> [APITokenRecord] {
        state.withLock { state in
            state.accounts.tokens.values.filter { userID == nil || $0.userID == userID }.sorted { $0.id > $1.id }
        }
    }

    public func revokeToken(id: Int64, nowMs: Int64) async throws -> APITokenRecord? {
        state.withLock { state in
            guard var token = state.accounts.tokens[id] else { return nil }
            if token.revokedAtMs == nil { token.revokedAtMs = nowMs }
            state.accounts.tokens[id] = token
            return token
        }
    }

    public func markTokenUsed(id: Int64, nowMs: Int64) async throws -> Bool {
        state.withLock { state in
            guard let token = state.accounts.tokens[id] else { return false }
            state.accounts.tokens[id]?.lastUsedAtMs = max(token.lastUsedAtMs ?? nowMs, nowMs)
            return token.lastUsedAtMs == nil
        }
    }

    public func bootstrapTokenRevoked() async throws -> Bool {
        state.withLock { $0.accounts.bootstrapRevoked }
    }

    public func revokeBootstrapToken(nowMs: Int64) async throws {
        state.withLock { $0.accounts.bootstrapRevoked = true }
    }

    public func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry {
        state.withLock { state in
            let last = state.accounts.audit.last
            let entry = AuditEntry.chained(
                sequence: (last?.sequence ?? 0) + 1,
                draft: draft,
                previousHash: last?.hash ?? AuditEntry.genesis
            )
            state.accounts.audit.append(entry)
            return entry
        }
    }

    public func auditEntries(filter: AuditFilter, before: Int64?, limit: Int) async throws -> [AuditEntry] {
        state.withLock { state in
            Array(state.accounts.audit.reversed().lazy.filter { $0.sequence < before ?? .max && filter.matches($0.draft) }.prefix(max(0, limit)))
        }
    }

    public func auditEntries(after: Int64, limit: Int) async throws -> [AuditEntry] {
        state.withLock { state in Array(state.accounts.audit.lazy.filter { $0.sequence > after }.prefix(max(0, limit))) }
    }
}
