import EcoWattProtocol
import EcoWattStorage
import Foundation

/// User and token management.
extension AccountService {
    /// A user name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    static func validName(_ name: String) -> Bool {
        func alphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        let bytes = Array(name.utf8)
        return (1...64).contains(bytes.count) && alphanumeric(bytes[0])
            && bytes.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private func checked(_ password: String, user: String) throws(Failure) {
        if let problem = PasswordPolicy.problem(password, user: user) { throw .weakPassword(problem) }
    }

    private func hash(_ password: String) async throws(Failure) -> String {
        do { return try await hasher.hash(password) } catch { throw .busy }
    }

    public func createUser(name: String, role: Role, password: String) async throws(Failure) -> UserRecord {
        guard Self.validName(name) else { throw .invalid("name must be 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit") }
        try checked(password, user: name)
        let hash = try await hash(password)
        do {
            let user = try await store.createUser(name: name, role: role, passwordHash: hash, nowMs: clock())
            logger.notice("operator account created", metadata: ["user": "\(name)", "role": "\(role.rawValue)"])
            return user
        } catch AccountStoreError.duplicateUser {
            throw .duplicateUser(name)
        } catch {
            throw storageFailure("create the user", error)
        }
    }

    public func users() async throws -> [UserRecord] { try await store.users() }

    public func user(named name: String) async throws(Failure) -> UserRecord {
        guard let user = try? await store.user(named: name) else { throw .unknownUser(name) }
        return user
    }

    /// Changes a user's role, state or password. The last active admin cannot be demoted or disabled.
    public func updateUser(name: String, role: Role?, disabled: Bool?, password: String?) async throws(Failure) -> UserRecord {
        let user = try await user(named: name)
        if user.role == .admin, !user.disabled, (role.map { $0 != .admin } ?? false) || disabled == true {
            guard ((try? await store.activeAdminCount()) ?? 0) > 1 else { throw .lastAdmin }
        }
        var change = UserChange(role: role, disabled: disabled)
        if let password {
            try checked(password, user: name)
            change.passwordHash = try await hash(password)
        }
        guard let updated = try? await store.updateUser(id: user.id, change: change, nowMs: clock()) else { throw .unknownUser(name) }
        return updated
    }

    /// Changes the caller's own password after checking the current one.
    public func changeOwnPassword(_ principal: Principal, current: String, new: String) async throws(Failure) {
        guard let user = principal.user else { throw .forbidden("The bootstrap token has no password") }
        let matches: Bool
        do { matches = try await hasher.verify(current, hash: user.passwordHash) } catch { throw .busy }
        guard matches else { throw .invalidCredentials }
        _ = try await updateUser(name: user.name, role: nil, disabled: nil, password: new)
    }

    public func deleteUser(name: String) async throws(Failure) {
        let user = try await user(named: name)
        if user.role == .admin, !user.disabled {
            guard ((try? await store.activeAdminCount()) ?? 0) > 1 else { throw .lastAdmin }
        }
        _ = try? await store.deleteUser(id: user.id)
    }

    // MARK: Tokens

    /// A new token: the record and the secret, shown once.
    public struct NewToken: Sendable {
        public var record: APITokenRecord
        public var secret: String
    }

    /// Creates a token for the caller's user, with a role no higher than the caller's.
    public func createToken(for principal: Principal, name: String, role: Role?, expiresInDays: Int?) async throws(Failure) -> NewToken {
        guard let user = principal.user else { throw .forbidden("Tokens belong to users; log in as a user to create one") }
        guard (1...64).contains(name.count), !name.contains(where: { $0.isNewline }) else { throw .invalid("name must be 1-64 characters") }
        let role = role ?? principal.role
        guard role <= principal.role else { throw .forbidden("A token's role cannot be above yours (\(principal.role.rawValue))") }
        if let days = expiresInDays, !(1...3650).contains(days) { throw .invalid("expires_in_days must be in 1...3650") }
        let now = clock()
        let secret = "ewt_" + Self.randomSecret()
        let draft = APITokenRecord(
            id: 0,
            userID: user.id,
            name: name,
            role: role,
            prefix: String(secret.prefix(12)),
            hash: Self.digest(secret),
            createdAtMs: now,
            expiresAtMs: expiresInDays.map { now + Int64($0) * 86_400_000 }
        )
        do {
            return NewToken(record: try await store.createToken(draft, maxPerUser: settings.maxTokensPerUser), secret: secret)
        } catch AccountStoreError.tooManyTokens(let limit) {
            throw .tooManyTokens(limit)
        } catch {
            throw storageFailure("create the token", error)
        }
    }

    /// The caller's tokens, or every user's for an admin asking for all.
    public func tokens(for principal: Principal, all: Bool) async throws(Failure) -> [(APITokenRecord, String)] {
        if all, principal.role < .admin { throw .forbidden("Listing every user's tokens needs the admin role") }
        guard all || principal.user != nil else { return [] }
        do {
            let users = Dictionary(uniqueKeysWithValues: try await store.users().map { ($0.id, $0.name) })
            return try await store.tokens(userID: all ? nil : principal.user?.id).map { ($0, users[$0.userID] ?? "?") }
        } catch {
            throw storageFailure("list the tokens", error)
        }
    }

    /// Revokes one of the caller's tokens (an admin: anyone's).
    public func revokeToken(id: Int64, by principal: Principal) async throws(Failure) -> APITokenRecord {
        guard let token = try? await store.token(id: id), principal.role == .admin || token.userID == principal.user?.id else {
            throw .unknownToken
        }
        guard let revoked = try? await store.revokeToken(id: id, nowMs: clock()) else { throw .unknownToken }
        return revoked
    }

    /// Whether any user exists (the first start logs how to create the first admin).
    public func hasUsers() async throws -> Bool { try await !store.users().isEmpty }
}
