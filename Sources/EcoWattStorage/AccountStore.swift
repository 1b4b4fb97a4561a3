/// Operator accounts, browser sessions, API tokens and the audit trail (issue 19).
public protocol AccountStore: Sendable {
    // MARK: Users

    /// Creates a user; throws ``AccountStoreError/duplicateUser(_:)`` when the name is taken.
    func createUser(name: String, role: Role, passwordHash: String, nowMs: Int64) async throws -> UserRecord
    func user(named name: String) async throws -> UserRecord?
    func user(id: Int64) async throws -> UserRecord?
    /// Every user, by name.
    func users() async throws -> [UserRecord]
    /// Applies `change`; `nil` when the user is unknown. A new password, a lower role or disabling ends the user's
    /// sessions (tokens keep their own role, capped by the user's at use).
    func updateUser(id: Int64, change: UserChange, nowMs: Int64) async throws -> UserRecord?
    /// Removes a user with their sessions and tokens.
    func deleteUser(id: Int64) async throws -> Bool
    /// Users whose role is `admin` and who are not disabled.
    func activeAdminCount() async throws -> Int

    // MARK: Sessions

    /// Stores a session; the user's oldest sessions beyond `maxPerUser` are ended.
    func createSession(_ session: SessionRecord, maxPerUser: Int) async throws
    func session(idHash: String) async throws -> SessionRecord?
    /// Records activity on a session (callers do it at most once a minute per session).
    func touchSession(idHash: String, nowMs: Int64) async throws
    func deleteSession(idHash: String) async throws
    /// Ends sessions idle since before `idleBeforeMs` or past their absolute expiry; returns how many.
    func pruneSessions(nowMs: Int64, idleBeforeMs: Int64) async throws -> Int

    // MARK: API tokens

    /// Stores a token (its id is assigned); throws ``AccountStoreError/tooManyTokens(limit:)`` beyond `maxPerUser`
    /// tokens that are neither revoked nor expired.
    func createToken(_ token: APITokenRecord, maxPerUser: Int) async throws -> APITokenRecord
    func token(hash: String) async throws -> APITokenRecord?
    func token(id: Int64) async throws -> APITokenRecord?
    /// Tokens of one user (every user's when `nil`), newest first.
    func tokens(userID: Int64?) async throws -> [APITokenRecord]
    /// Revokes a token; `nil` when unknown.
    func revokeToken(id: Int64, nowMs: Int64) async throws -> APITokenRecord?
    /// Records a use; returns `true` on the token's first use.
    func markTokenUsed(id: Int64, nowMs: Int64) async throws -> Bool

    // MARK: Bootstrap token

    /// Whether an admin revoked the bootstrap token (`keys/operator_token`).
    func bootstrapTokenRevoked() async throws -> Bool
    func revokeBootstrapToken(nowMs: Int64) async throws

    // MARK: Audit trail

    /// Appends an entry after the current head of the chain, atomically.
    func appendAudit(_ draft: AuditDraft) async throws -> AuditEntry
    /// Entries newest first matching `filter`, with a sequence below `before` when it is given.
    func auditEntries(filter: AuditFilter, before: Int64?, limit: Int) async throws -> [AuditEntry]
    /// Entries oldest first with a sequence above `after` (chain verification and export).
    func auditEntries(after: Int64, limit: Int) async throws -> [AuditEntry]
}

/// Per-device HMAC keys: provisioning, rotation and revocation (issue 19).
public protocol DeviceCredentialStore: Sendable {
    /// Every device that has a key, a next key or a revocation.
    func deviceCredentials() async throws -> [String: DeviceCredential]
    func deviceCredential(_ deviceID: String) async throws -> DeviceCredential?
    /// Sets the current key (`nil`: back to the fleet key), clearing a next key and a revocation.
    func setDeviceKey(deviceID: String, key: [UInt8]?) async throws
    /// Gives a device its own key, creating its registry row as an operator's (admitted) when it has none. `false`
    /// (nothing changes) when it already has a key and `replace` is not set.
    func provisionDevice(_ deviceID: String, key: [UInt8], replace: Bool, nowMs: Int64) async throws -> Bool
    /// Sets (or with `nil` withdraws) the key the device will sign with next; both keys are accepted meanwhile.
    func setNextDeviceKey(deviceID: String, key: [UInt8]?, nowMs: Int64) async throws
    /// Makes the next key the current one; `false` when there is no next key.
    func promoteNextDeviceKey(deviceID: String, nowMs: Int64) async throws -> Bool
    /// Revokes a device: its uploads are refused until it is provisioned again. `false` when already revoked.
    func revokeDevice(deviceID: String, nowMs: Int64) async throws -> Bool
    /// Counts an upload refused because the device is not admitted (`device_admission = known`): the id is kept
    /// as pending (bounded like every pending device) with its first and last attempt and their number.
    func recordRefusedUpload(deviceID: String, nowMs: Int64) async throws
}
