import Crypto
import EcoWattProtocol

/// What an operator may do (issue 19). Ordered: each role may do everything the roles below it may.
public enum Role: String, Sendable, Codable, CaseIterable, Comparable {
    /// Reads everything operators read, no secrets.
    case viewer
    /// Also commands, configuration, diagnostics, firmware uploads and deployments.
    case `operator`
    /// Also users, tokens, device keys, nonce resets, fault injection and deletions.
    case admin

    var rank: Int {
        switch self {
        case .viewer: 0
        case .operator: 1
        case .admin: 2
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}

/// An operator account.
public struct UserRecord: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var role: Role
    /// The bcrypt hash of the password (never leaves the server).
    public var passwordHash: String
    public var disabled: Bool
    public var createdAtMs: Int64
    public var updatedAtMs: Int64

    public init(id: Int64, name: String, role: Role, passwordHash: String, disabled: Bool, createdAtMs: Int64, updatedAtMs: Int64) {
        self.id = id
        self.name = name
        self.role = role
        self.passwordHash = passwordHash
        self.disabled = disabled
        self.createdAtMs = createdAtMs
        self.updatedAtMs = updatedAtMs
    }
}

/// Changes to an account (`nil` leaves a field unchanged).
public struct UserChange: Sendable, Equatable {
    public var role: Role?
    public var passwordHash: String?
    public var disabled: Bool?

    public init(role: Role? = nil, passwordHash: String? = nil, disabled: Bool? = nil) {
        self.role = role
        self.passwordHash = passwordHash
        self.disabled = disabled
    }
}

/// A browser session. Only the SHA-256 of the session id is stored.
public struct SessionRecord: Sendable, Equatable {
    /// Hex SHA-256 of the session id the cookie carries.
    public var idHash: String
    public var userID: Int64
    /// The per-session token state-changing requests must echo in `X-CSRF-Token`.
    public var csrfToken: String
    public var createdAtMs: Int64
    public var lastUsedMs: Int64
    /// Absolute expiry, whatever the activity.
    public var expiresAtMs: Int64

    public init(idHash: String, userID: Int64, csrfToken: String, createdAtMs: Int64, lastUsedMs: Int64, expiresAtMs: Int64) {
        self.idHash = idHash
        self.userID = userID
        self.csrfToken = csrfToken
        self.createdAtMs = createdAtMs
        self.lastUsedMs = lastUsedMs
        self.expiresAtMs = expiresAtMs
    }
}

/// An API token for automation. Only its SHA-256 is stored; the prefix identifies it in lists.
public struct APITokenRecord: Sendable, Equatable {
    public var id: Int64
    public var userID: Int64
    public var name: String
    /// Never above the owner's role (the lower of the two applies when the owner's role is lowered later).
    public var role: Role
    /// The first characters of the token, shown in lists.
    public var prefix: String
    /// Hex SHA-256 of the whole token.
    public var hash: String
    public var createdAtMs: Int64
    public var expiresAtMs: Int64?
    public var lastUsedAtMs: Int64?
    public var revokedAtMs: Int64?

    public init(
        id: Int64,
        userID: Int64,
        name: String,
        role: Role,
        prefix: String,
        hash: String,
        createdAtMs: Int64,
        expiresAtMs: Int64?,
        lastUsedAtMs: Int64? = nil,
        revokedAtMs: Int64? = nil
    ) {
        self.id = id
        self.userID = userID
        self.name = name
        self.role = role
        self.prefix = prefix
        self.hash = hash
        self.createdAtMs = createdAtMs
        self.expiresAtMs = expiresAtMs
        self.lastUsedAtMs = lastUsedAtMs
        self.revokedAtMs = revokedAtMs
    }
}

/// One audit event before it is chained.
public struct AuditDraft: Sendable, Equatable {
    public var atMs: Int64
    /// `user:<name>`, `token:<id>:<name>`, `bootstrap`, `device:<id>`, `anonymous` or a login's claimed user name.
    public var actor: String
    public var role: String
    /// What was done: the operation id (`queueCommand`, `login`, `loginFailed`, `tokenFirstUse`, `deviceKeyRotated`).
    public var action: String
    /// What it was done to (path parameters, `device:<id>`), empty when nothing in particular.
    public var target: String
    /// Hex SHA-256 of the request body, `redacted` for bodies that carry secrets, empty without a body.
    public var bodyDigest: String
    /// The HTTP status answered, or `ok`.
    public var outcome: String
    public var requestID: String
    public var clientAddress: String

    public init(
        atMs: Int64,
        actor: String,
        role: String,
        action: String,
        target: String,
        bodyDigest: String,
        outcome: String,
        requestID: String,
        clientAddress: String
    ) {
        self.atMs = atMs
        self.actor = actor
        self.role = role
        self.action = action
        self.target = target
        self.bodyDigest = bodyDigest
        self.outcome = outcome
        self.requestID = requestID
        self.clientAddress = clientAddress
    }
}

/// An entry of the append-only audit trail: each carries the SHA-256 of the previous one, so that editing or deleting
/// an entry breaks the chain.
public struct AuditEntry: Sendable, Equatable {
    /// 1, 2, 3, … without gaps.
    public var sequence: Int64
    public var draft: AuditDraft
    /// The previous entry's ``hash`` (64 zeros for the first).
    public var previousHash: String
    /// SHA-256 over ``previousHash`` and every field (``AuditEntry/chainHash(sequence:draft:previousHash:)``).
    public var hash: String

    public init(sequence: Int64, draft: AuditDraft, previousHash: String, hash: String) {
        self.sequence = sequence
        self.draft = draft
        self.previousHash = previousHash
        self.hash = hash
    }

    /// The previous hash of the first entry.
    public static let genesis = String(repeating: "0", count: 64)

    /// Chains `draft` after `previousHash` as entry `sequence`.
    public static func chained(sequence: Int64, draft: AuditDraft, previousHash: String) -> AuditEntry {
        AuditEntry(
            sequence: sequence,
            draft: draft,
            previousHash: previousHash,
            hash: chainHash(sequence: sequence, draft: draft, previousHash: previousHash)
        )
    }

    /// Hex SHA-256 of the previous hash and the fields, each length-prefixed (no separator can be forged inside a field).
    public static func chainHash(sequence: Int64, draft: AuditDraft, previousHash: String) -> String {
        var hasher = SHA256()
        let fields = [
            previousHash, "\(sequence)", "\(draft.atMs)", draft.actor, draft.role, draft.action, draft.target, draft.bodyDigest,
            draft.outcome, draft.requestID, draft.clientAddress,
        ]
        for field in fields {
            let bytes = Array(field.utf8)
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { hasher.update(bufferPointer: $0) }
            hasher.update(data: bytes)
        }
        return HexCoding.encode(Array(hasher.finalize()))
    }

    /// Whether the stored hash is the one the fields give.
    public var isIntact: Bool { hash == Self.chainHash(sequence: sequence, draft: draft, previousHash: previousHash) }
}

/// What an audit listing is narrowed to.
public struct AuditFilter: Sendable, Equatable {
    public var actor: String?
    public var action: String?
    public var target: String?
    public var sinceMs: Int64?

    public init(actor: String? = nil, action: String? = nil, target: String? = nil, sinceMs: Int64? = nil) {
        self.actor = actor
        self.action = action
        self.target = target
        self.sinceMs = sinceMs
    }

    func matches(_ draft: AuditDraft) -> Bool {
        (actor.map { $0 == draft.actor } ?? true) && (action.map { $0 == draft.action } ?? true)
            && (target.map { $0 == draft.target } ?? true) && (sinceMs.map { draft.atMs >= $0 } ?? true)
    }
}

/// Refusals of the account store.
public enum AccountStoreError: Error, Sendable, Equatable {
    /// A user of that name exists.
    case duplicateUser(String)
    /// The user already has the maximum number of tokens.
    case tooManyTokens(limit: Int)
}

/// A device's own HMAC keys (issue 19): the current key (the fleet key when `nil`), the next key of a rotation, and
/// whether the device is revoked.
public struct DeviceCredential: Sendable, Equatable {
    public var key: [UInt8]?
    public var nextKey: [UInt8]?
    public var revokedAtMs: Int64?
    public var updatedAtMs: Int64

    public init(key: [UInt8]?, nextKey: [UInt8]? = nil, revokedAtMs: Int64? = nil, updatedAtMs: Int64 = 0) {
        self.key = key
        self.nextKey = nextKey
        self.revokedAtMs = revokedAtMs
        self.updatedAtMs = updatedAtMs
    }
}
