import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import Foundation
import OpenAPIRuntime

// Logins, users, API tokens and the audit trail (issue 19). The caller is the principal the access middleware
// authenticated (``RequestIdentity``).
extension OperatorAPI {
    /// The authenticated caller (the middleware refuses anonymous requests before non-public handlers run).
    static func caller() throws -> Principal {
        guard let principal = RequestIdentity.current?.principal else { throw APIError(.unauthorized, "Authentication required") }
        return principal
    }

    func login(_ input: Operations.Login.Input) async throws -> Operations.Login.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let identity = RequestIdentity.current
        identity?.note(actor: "login:\(Self.auditText(body.name))", target: "user=\(Self.auditText(body.name))")
        let login = try await accounts.login(name: body.name, password: body.password, clientAddress: identity?.clientAddress ?? "")
        identity?.note(actor: "user:\(login.user.name)", cookie: accounts.cookie(login))
        return .ok(
            .init(
                body: .json(.init(user: .init(login.user), csrfToken: login.session.csrfToken, expiresAt: date(login.session.expiresAtMs)))
            )
        )
    }

    func logout(_ input: Operations.Logout.Input) async throws -> Operations.Logout.Output {
        try await accounts.logout(try Self.caller())
        RequestIdentity.current?.note(cookie: accounts.cookie(nil))
        return .noContent(.init())
    }

    func getMe(_ input: Operations.GetMe.Input) async throws -> Operations.GetMe.Output {
        guard let principal = RequestIdentity.current?.principal else {
            return .ok(.init(body: .json(.init(actor: "anonymous", kind: .anonymous))))
        }
        let (kind, csrf): (Schemas.Me.KindPayload, String?) =
            switch principal.kind {
            case .bootstrap: (.bootstrap, nil)
            case .session(_, let csrf): (.session, csrf)
            case .token: (.token, nil)
            }
        return .ok(
            .init(
                body: .json(
                    .init(
                        actor: principal.actor,
                        kind: kind,
                        role: .init(principal.role),
                        user: principal.user.map(Schemas.User.init),
                        csrfToken: csrf
                    )
                )
            )
        )
    }

    func changePassword(_ input: Operations.ChangePassword.Input) async throws -> Operations.ChangePassword.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        try await accounts.changeOwnPassword(try Self.caller(), current: body.currentPassword, new: body.newPassword)
        return .noContent(.init())
    }

    func revokeBootstrapToken(_ input: Operations.RevokeBootstrapToken.Input) async throws -> Operations.RevokeBootstrapToken.Output {
        try await accounts.revokeBootstrapToken(path: bootstrapTokenPath)
        return .noContent(.init())
    }

    // MARK: Users

    func listUsers(_ input: Operations.ListUsers.Input) async throws -> Operations.ListUsers.Output {
        .ok(.init(body: .json(.init(items: try await accounts.users().map(Schemas.User.init)))))
    }

    func createUser(_ input: Operations.CreateUser.Input) async throws -> Operations.CreateUser.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        RequestIdentity.current?.note(target: "name=\(Self.auditText(body.name)),role=\(body.role.rawValue)")
        let user = try await accounts.createUser(name: body.name, role: Role(body.role), password: body.password)
        return .created(.init(body: .json(.init(user))))
    }

    func getUser(_ input: Operations.GetUser.Input) async throws -> Operations.GetUser.Output {
        .ok(.init(body: .json(.init(try await accounts.user(named: input.path.name)))))
    }

    func updateUser(_ input: Operations.UpdateUser.Input) async throws -> Operations.UpdateUser.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        // The body is not digested (it may hold a password): the audit target says what changed instead.
        let changes =
            [body.role.map { "role=\($0.rawValue)" }, body.disabled.map { "disabled=\($0)" }, body.password.map { _ in "password=changed" }]
        RequestIdentity.current?.note(target: (["name=\(Self.auditText(input.path.name))"] + changes.compactMap { $0 }).joined(separator: ","))
        let user = try await accounts.updateUser(
            name: input.path.name,
            role: body.role.map(Role.init),
            disabled: body.disabled,
            password: body.password
        )
        return .ok(.init(body: .json(.init(user))))
    }

    func deleteUser(_ input: Operations.DeleteUser.Input) async throws -> Operations.DeleteUser.Output {
        try await accounts.deleteUser(name: input.path.name)
        return .noContent(.init())
    }

    // MARK: Tokens

    func listTokens(_ input: Operations.ListTokens.Input) async throws -> Operations.ListTokens.Output {
        let tokens = try await accounts.tokens(for: try Self.caller(), all: input.query.all ?? false)
        return .ok(.init(body: .json(.init(items: tokens.map { Schemas.APIToken($0.0, user: $0.1) }))))
    }

    func createToken(_ input: Operations.CreateToken.Input) async throws -> Operations.CreateToken.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let principal = try Self.caller()
        let token = try await accounts.createToken(
            for: principal,
            name: body.name,
            role: body.role.map(Role.init),
            expiresInDays: body.expiresInDays
        )
        RequestIdentity.current?.note(target: "token:\(token.record.id)")
        return .created(.init(body: .json(.init(token: .init(token.record, user: principal.user?.name ?? "?"), secret: token.secret))))
    }

    func revokeToken(_ input: Operations.RevokeToken.Input) async throws -> Operations.RevokeToken.Output {
        let principal = try Self.caller()
        let token = try await accounts.revokeToken(id: input.path.tokenId, by: principal)
        let owner = token.userID == principal.user?.id ? principal.user?.name : try? await accounts.store.user(id: token.userID)?.name
        return .ok(.init(body: .json(.init(token, user: owner ?? "?"))))
    }

    // MARK: Audit

    func listAudit(_ input: Operations.ListAudit.Input) async throws -> Operations.ListAudit.Output {
        let query = input.query
        let limit = try Self.limit(query.limit, default: 100, maximum: 1000)
        let entries: [AuditEntry]
        let next: String?
        if let after = query.after {
            // Oldest first (export): the cursor is the last sequence returned.
            let from = try PageCursor.decode(query.cursor, count: 1).map { try Self.sequence($0[0]) } ?? after
            entries = try await accounts.audit.export(after: from, limit: limit)
        } else {
            let filter = AuditFilter(
                actor: query.actor,
                action: query.action,
                target: query.target,
                sinceMs: query.since.map(MillisecondDates.milliseconds)
            )
            let before = try PageCursor.decode(query.cursor, count: 1).map { try Self.sequence($0[0]) }
            entries = try await accounts.audit.entries(filter: filter, before: before, limit: limit)
        }
        next = entries.count == limit ? entries.last.map { PageCursor.encode(["\($0.sequence)"]) } : nil
        return .ok(.init(body: .json(.init(items: entries.map(Schemas.AuditEntry.init), nextCursor: next))))
    }

    /// Text from a request as the audit trail records it: escaped like log values, at most 128 characters.
    static func auditText(_ text: String) -> String { LogText.escaped(text, limit: 128) }

    static func sequence(_ text: String) throws -> Int64 {
        guard let value = Int64(text), value >= 0 else { throw PageCursor.invalid }
        return value
    }

    func verifyAudit(_ input: Operations.VerifyAudit.Input) async throws -> Operations.VerifyAudit.Output {
        let result = try await accounts.audit.verify()
        return .ok(
            .init(
                body: .json(
                    .init(
                        intact: result.intact,
                        entries: result.entries,
                        headSequence: result.headSequence,
                        headHash: result.headHash,
                        externalSequence: result.externalSequence,
                        firstBrokenSequence: result.firstBroken?.sequence,
                        firstBrokenReason: result.firstBroken?.reason
                    )
                )
            )
        )
    }

    // MARK: Device credentials

    func getDeviceCredentials(_ input: Operations.GetDeviceCredentials.Input) async throws -> Operations.GetDeviceCredentials.Output {
        let id = try Self.deviceID(input.path.deviceId)
        guard let state = try await credentials.credential(id) else { throw DeviceCredentialService.Failure.unknown(id) }
        return .ok(.init(body: .json(.init(id, state))))
    }

    func provisionDevice(_ input: Operations.ProvisionDevice.Input) async throws -> Operations.ProvisionDevice.Output {
        let id = try Self.deviceID(input.path.deviceId)
        var replace = false
        if case .json(let body)? = input.body { replace = body.replace ?? false }
        let issued = try await credentials.provision(id, replace: replace)
        return .created(.init(body: .json(.init(id, issued))))
    }

    func rotateDeviceKey(_ input: Operations.RotateDeviceKey.Input) async throws -> Operations.RotateDeviceKey.Output {
        let id = try Self.deviceID(input.path.deviceId)
        _ = try await devices.device(id)
        return .created(.init(body: .json(.init(id, try await credentials.rotate(id)))))
    }

    func withdrawDeviceKeyRotation(
        _ input: Operations.WithdrawDeviceKeyRotation.Input
    ) async throws -> Operations.WithdrawDeviceKeyRotation.Output {
        let id = try Self.deviceID(input.path.deviceId)
        return .ok(.init(body: .json(.init(id, try await credentials.withdrawRotation(id)))))
    }

    func revokeDevice(_ input: Operations.RevokeDevice.Input) async throws -> Operations.RevokeDevice.Output {
        let id = try Self.deviceID(input.path.deviceId)
        _ = try await devices.device(id)
        return .ok(.init(body: .json(.init(id, try await credentials.revoke(id)))))
    }

    func acceptDevice(_ input: Operations.AcceptDevice.Input) async throws -> Operations.AcceptDevice.Output {
        let id = try Self.deviceID(input.path.deviceId)
        return .ok(.init(body: .json(.init(try await devices.update(id, fields: DeviceFields())))))
    }
}

extension Role {
    init(_ role: Schemas.Role) { self = Role(rawValue: role.rawValue) ?? .viewer }
}

extension Schemas.Role {
    init(_ role: Role) { self = Schemas.Role(rawValue: role.rawValue) ?? .viewer }
}

extension Schemas.User {
    init(_ user: UserRecord) {
        self.init(
            name: user.name,
            role: .init(user.role),
            disabled: user.disabled,
            createdAt: date(user.createdAtMs),
            updatedAt: date(user.updatedAtMs)
        )
    }
}

extension Schemas.APIToken {
    init(_ token: APITokenRecord, user: String) {
        self.init(
            id: token.id,
            name: token.name,
            user: user,
            role: .init(token.role),
            prefix: token.prefix,
            createdAt: date(token.createdAtMs),
            expiresAt: date(token.expiresAtMs),
            lastUsedAt: date(token.lastUsedAtMs),
            revokedAt: date(token.revokedAtMs)
        )
    }
}

extension Schemas.AuditEntry {
    init(_ entry: AuditEntry) {
        let draft = entry.draft
        self.init(
            sequence: entry.sequence,
            at: date(draft.atMs),
            actor: draft.actor,
            role: draft.role,
            action: draft.action,
            target: draft.target,
            bodyDigest: draft.bodyDigest,
            outcome: draft.outcome,
            requestId: draft.requestID,
            clientAddress: draft.clientAddress,
            previousHash: entry.previousHash,
            hash: entry.hash
        )
    }
}

extension Schemas.DeviceCredentials {
    init(_ deviceID: String, _ state: DeviceCredential) {
        self.init(
            deviceId: deviceID,
            ownKey: state.key != nil,
            keyFingerprint: state.key.map(DeviceCredentialService.fingerprint),
            nextKeyPending: state.nextKey != nil,
            nextKeyFingerprint: state.nextKey.map(DeviceCredentialService.fingerprint),
            revokedAt: date(state.revokedAtMs),
            updatedAt: state.updatedAtMs > 0 ? MillisecondDates.date(state.updatedAtMs) : nil
        )
    }
}

extension Schemas.DeviceKeyIssued {
    init(_ deviceID: String, _ issued: DeviceCredentialService.Issued) {
        self.init(
            deviceId: deviceID,
            keyHex: HexCoding.encode(issued.key),
            securityCpp: issued.securityCpp,
            credentials: .init(deviceID, issued.state)
        )
    }
}
