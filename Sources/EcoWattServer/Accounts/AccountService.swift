import Crypto
import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Operator accounts, logins, sessions and API tokens (issue 19). A class: its only mutable state (the bootstrap
/// token, the token-use marks) sits behind mutexes; the store keeps the rest.
public final class AccountService: Service, Sendable {
    let store: any AccountStore
    let hasher: PasswordHasher
    let throttle: LoginThrottle
    let audit: AuditTrail
    let settings: ServerConfiguration.Accounts
    let metrics: ServerMetrics?
    let logger: Logger
    let clock: @Sendable () -> Int64
    /// `Secure` on the session cookie (the operator listener serves TLS).
    let secureCookies: Bool
    /// SHA-256 of the bootstrap token while it is valid.
    private let bootstrap: Mutex<SHA256.Digest?>
    /// When each token's use was last recorded (at most once a minute per token; bounded).
    private let tokenUses = Mutex([Int64: Int64]())

    public static let cookieName = "ecowatt_session"

    public init(
        store: any AccountStore,
        hasher: PasswordHasher,
        audit: AuditTrail,
        settings: ServerConfiguration.Accounts,
        bootstrapToken: String?,
        secureCookies: Bool,
        throttle: LoginThrottle = LoginThrottle(),
        metrics: ServerMetrics? = nil,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64
    ) {
        self.store = store
        self.hasher = hasher
        self.throttle = throttle
        self.audit = audit
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.secureCookies = secureCookies
        bootstrap = Mutex(bootstrapToken.map { SHA256.hash(data: Array($0.utf8)) })
    }

    /// Errors of the account operations (mapped to HTTP beside the routes).
    public enum Failure: Error, Equatable {
        case unauthenticated(String)
        case forbidden(String)
        case invalidCredentials
        case throttled(retryAfterSeconds: Int)
        case busy
        case invalid(String)
        case weakPassword(String)
        case duplicateUser(String)
        case unknownUser(String)
        case unknownToken
        case lastAdmin
        case tooManyTokens(Int)
        /// The account store failed (`action` did not happen); the log has the database's message.
        case storage(action: String)
    }

    /// A store failure: its detail goes to the log, never to the client (SQL, paths).
    func storageFailure(_ action: String, _ error: any Error) -> Failure {
        logger.error("account store failed", metadata: ["action": "\(action)", "error": "\(error.logDescription)"])
        return .storage(action: action)
    }

    // MARK: Authentication

    /// The principal of a request: a bearer token (bootstrap or API token) or a session cookie; `nil` without either.
    public func authenticate(authorization: String?, cookie: String?) async throws(Failure) -> Principal? {
        if let authorization {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            guard authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else {
                throw .unauthenticated("Send 'Authorization: Bearer <token>'")
            }
            return try await bearer(String(authorization.dropFirst(7).drop { $0 == " " }))
        }
        if let id = cookie.flatMap(Self.sessionID) { return try await session(id) }
        return nil
    }

    private func bearer(_ token: String) async throws(Failure) -> Principal {
        let digest = SHA256.hash(data: Array(token.utf8))
        // Comparing digests keeps the comparison constant-time and independent of the token length.
        if bootstrap.withLock({ $0 == digest }) { return Principal(kind: .bootstrap, user: nil, role: .admin) }
        let now = clock()
        let record: APITokenRecord?
        let user: UserRecord?
        do {
            record = try await store.token(hash: HexCoding.encode(Array(digest)))
            user = try await record.asyncMap { try await store.user(id: $0.userID) }
        } catch {
            throw storageFailure("check the credentials", error)
        }
        guard let record, let user else { throw .unauthenticated("Invalid token") }
        guard record.revokedAtMs == nil else { throw .unauthenticated("Token revoked") }
        guard (record.expiresAtMs ?? .max) > now else { throw .unauthenticated("Token expired") }
        guard !user.disabled else { throw .unauthenticated("User disabled") }
        let principal = Principal(kind: .token(id: record.id, name: record.name), user: user, role: min(record.role, user.role))
        let due = tokenUses.withLock { uses in
            guard now - (uses[record.id] ?? .min / 2) >= 60_000 else { return false }
            if uses.count >= 10_000 { uses.removeAll() }
            uses[record.id] = now
            return true
        }
        if due, (try? await store.markTokenUsed(id: record.id, nowMs: now)) == true {
            await auditEvent("tokenFirstUse", principal: principal, target: "token:\(record.id)")
        }
        return principal
    }

    private func session(_ id: String) async throws(Failure) -> Principal {
        let now = clock()
        let hash = Self.digest(id)
        let found: (SessionRecord, UserRecord)?
        do {
            if let session = try await store.session(idHash: hash), let user = try await store.user(id: session.userID) {
                found = (session, user)
            } else {
                found = nil
            }
        } catch {
            throw storageFailure("check the credentials", error)
        }
        guard let (session, user) = found else { throw .unauthenticated("Session ended; log in again") }
        guard session.expiresAtMs > now, session.lastUsedMs > now - Int64(settings.sessionIdleMinutes) * 60_000 else {
            try? await store.deleteSession(idHash: hash)
            throw .unauthenticated("Session expired; log in again")
        }
        guard !user.disabled else { throw .unauthenticated("User disabled") }
        if now - session.lastUsedMs >= 60_000 { try? await store.touchSession(idHash: hash, nowMs: now) }
        return Principal(kind: .session(idHash: hash, csrfToken: session.csrfToken), user: user, role: user.role)
    }

    /// The session id in a `Cookie` header.
    static func sessionID(_ header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(cookieName + "=") { return String(pair.dropFirst(cookieName.count + 1)) }
        }
        return nil
    }

    static func digest(_ secret: String) -> String { HexCoding.encode(Array(SHA256.hash(data: Array(secret.utf8)))) }

    /// 256 random bits, base64url without padding.
    static func randomSecret() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    // MARK: Login

    /// A successful login: the session id for the cookie and the session.
    public struct Login: Sendable {
        public var sessionID: String
        public var session: SessionRecord
        public var user: UserRecord
    }

    /// Checks a password (throttled per user and address, hashed on the bounded pool) and opens a session.
    public func login(name: String, password: String, clientAddress: String) async throws(Failure) -> Login {
        let now = clock()
        if let seconds = throttle.retryAfter(user: name, address: clientAddress, nowMs: now) {
            metrics?.increment("ecowatt_logins_total", [("outcome", "throttled")])
            await pauseBeforeRefusal(atMost: .seconds(seconds))
            throw .throttled(retryAfterSeconds: seconds)
        }
        // Refused before any work: a flood costs its HTTP handling, not a database read each.
        guard hasher.hasCapacity else { throw await refuseBusy(clientAddress, nowMs: now) }
        let user = try? await store.user(named: name)
        let matches: Bool
        do {
            matches = try await hasher.verify(password, hash: user?.passwordHash)
        } catch {
            throw await refuseBusy(clientAddress, nowMs: now)
        }
        guard matches, let user, !user.disabled else {
            throttle.failed(user: name, address: clientAddress, nowMs: now)
            metrics?.increment("ecowatt_logins_total", [("outcome", "failed")])
            throw .invalidCredentials
        }
        throttle.succeeded(user: name, address: clientAddress)
        let id = Self.randomSecret()
        let session = SessionRecord(
            idHash: Self.digest(id),
            userID: user.id,
            csrfToken: Self.randomSecret(),
            createdAtMs: now,
            lastUsedMs: now,
            expiresAtMs: now + Int64(settings.sessionMaxHours) * 3_600_000
        )
        do {
            try await store.createSession(session, maxPerUser: settings.maxSessionsPerUser)
        } catch {
            throw storageFailure("store the session", error)
        }
        metrics?.increment("ecowatt_logins_total", [("outcome", "succeeded")])
        return Login(sessionID: id, session: session, user: user)
    }

    /// A login refused because the hashing queue is full: counted, held against its address, answered late.
    private func refuseBusy(_ clientAddress: String, nowMs: Int64) async -> Failure {
        metrics?.increment("ecowatt_logins_total", [("outcome", "busy")])
        throttle.refused(address: clientAddress, nowMs: nowMs)
        await pauseBeforeRefusal()
        return .busy
    }

    /// Holds a refused login's answer for `login_refusal_delay_ms` (at most `atMost`, its `Retry-After`). A closed-loop
    /// flood of logins from 32 connections took 8 400 answers a second of both cores beside ingest (ingest kept
    /// 31–59 % of its throughput; 95 % with the delay, BENCHMARKS.md). Waiting costs a sleeping task, and a client that
    /// waits for its answers gets one a second per connection. Connections are capped per address, so the waits are
    /// bounded too.
    private func pauseBeforeRefusal(atMost limit: Duration = .seconds(3600)) async {
        let delay = min(Duration.milliseconds(settings.loginRefusalDelayMs), limit)
        guard delay > .zero else { return }
        try? await Task.sleep(for: delay)
    }

    /// The `Set-Cookie` value of a session (`nil`: the cookie that ends it).
    public func cookie(_ login: Login?) -> String {
        let secure = secureCookies ? "; Secure" : ""
        guard let login else { return "\(Self.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0\(secure)" }
        let maxAge = (login.session.expiresAtMs - login.session.createdAtMs) / 1000
        return "\(Self.cookieName)=\(login.sessionID); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(maxAge)\(secure)"
    }

    public func logout(_ principal: Principal) async throws {
        if case .session(let hash, _) = principal.kind { try await store.deleteSession(idHash: hash) }
    }

    /// Ends idle and expired sessions every five minutes.
    public func run() async throws {
        await repeatUntilShutdown(every: .seconds(300)) { [self] in
            do {
                _ = try await pruneSessions()
            } catch  where error.isShutdown {
            } catch {
                logger.warning("sessions not pruned", metadata: ["error": "\(error.logDescription)"])
            }
        }
    }

    /// Ends idle and expired sessions.
    public func pruneSessions() async throws -> Int {
        let now = clock()
        return try await store.pruneSessions(nowMs: now, idleBeforeMs: now - Int64(settings.sessionIdleMinutes) * 60_000)
    }

    /// Revokes the bootstrap token for good (recorded in the database; the file is removed).
    public func revokeBootstrapToken(path: String) async throws {
        try await store.revokeBootstrapToken(nowMs: clock())
        bootstrap.withLock { $0 = nil }
        try? FileManager.default.removeItem(atPath: path)
        logger.notice("bootstrap operator token revoked", metadata: ["path": "\(path)"])
    }

    public var bootstrapActive: Bool { bootstrap.withLock { $0 != nil } }

    /// Records an event that is not an HTTP request of its own (first token use, key rotation).
    func auditEvent(_ action: String, principal: Principal?, target: String, actor: String? = nil) async {
        let identity = RequestIdentity.current
        await audit.record(
            AuditDraft(
                atMs: clock(),
                actor: actor ?? principal?.actor ?? "anonymous",
                role: principal?.role.rawValue ?? "",
                action: action,
                target: target,
                bodyDigest: "",
                outcome: "ok",
                requestID: identity?.requestID ?? "",
                clientAddress: identity?.clientAddress ?? ""
            )
        )
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T?) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
