import EcoWattProtocol
import EcoWattStorage
import Testing

/// The contract of ``AccountStore`` and ``DeviceCredentialStore`` (issue 19), against every backend.
@Suite struct AccountContractTests {
    typealias Backend = StoreContractTests.Backend

    @Test(arguments: Backend.cases) func usersAreCreatedOnceChangedAndRemovedWithTheirSessionsAndTokens(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let accounts = stores.accounts
            let alice = try await accounts.createUser(name: "alice", role: .admin, passwordHash: "h1", nowMs: 10)
            let bob = try await accounts.createUser(name: "bob", role: .operator, passwordHash: "h2", nowMs: 11)
            await #expect(throws: AccountStoreError.duplicateUser("bob")) {
                try await accounts.createUser(name: "bob", role: .viewer, passwordHash: "h3", nowMs: 12)
            }
            #expect(try await accounts.users().map(\.name) == ["alice", "bob"])
            #expect(try await accounts.user(named: "bob") == bob)
            #expect(try await accounts.user(id: alice.id)?.role == .admin)
            #expect(try await accounts.activeAdminCount() == 1)

            let session = SessionRecord(idHash: "s1", userID: bob.id, csrfToken: "c", createdAtMs: 20, lastUsedMs: 20, expiresAtMs: 1_000)
            try await accounts.createSession(session, maxPerUser: 5)
            var token = APITokenRecord(
                id: 0,
                userID: bob.id,
                name: "ci",
                role: .viewer,
                prefix: "ewt_a",
                hash: "t1",
                createdAtMs: 20,
                expiresAtMs: nil
            )
            token = try await accounts.createToken(token, maxPerUser: 5)
            #expect(try await accounts.token(hash: "t1") == token)

            // A lower role ends the sessions, tokens stay.
            let demoted = try await accounts.updateUser(id: bob.id, change: UserChange(role: .viewer), nowMs: 30)
            #expect(demoted?.role == .viewer && demoted?.updatedAtMs == 30)
            #expect(try await accounts.session(idHash: "s1") == nil)
            #expect(try await accounts.token(id: token.id) != nil)
            #expect(try await accounts.updateUser(id: 999, change: UserChange(disabled: true), nowMs: 30) == nil)

            #expect(try await accounts.deleteUser(id: bob.id))
            #expect(try await accounts.token(id: token.id) == nil)
            #expect(try await accounts.user(named: "bob") == nil)
            #expect(try await !accounts.deleteUser(id: bob.id))
        }
    }

    @Test(arguments: Backend.cases) func sessionsAreBoundedPerUserTouchedAndPruned(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let accounts = stores.accounts
            let user = try await accounts.createUser(name: "carol", role: .viewer, passwordHash: "h", nowMs: 0)
            for i in 1...4 {
                let session = SessionRecord(
                    idHash: "s\(i)",
                    userID: user.id,
                    csrfToken: "c\(i)",
                    createdAtMs: Int64(i),
                    lastUsedMs: Int64(i),
                    expiresAtMs: 10_000
                )
                try await accounts.createSession(session, maxPerUser: 3)
            }
            #expect(try await accounts.session(idHash: "s1") == nil, "the oldest session beyond the cap ended")
            #expect(try await accounts.session(idHash: "s4")?.csrfToken == "c4")
            try await accounts.touchSession(idHash: "s3", nowMs: 500)
            #expect(try await accounts.session(idHash: "s3")?.lastUsedMs == 500)
            // Idle before 100: s2 and s4 go; s3 was used at 500.
            #expect(try await accounts.pruneSessions(nowMs: 600, idleBeforeMs: 100) == 2)
            #expect(try await accounts.session(idHash: "s3") != nil)
            #expect(try await accounts.pruneSessions(nowMs: 10_000, idleBeforeMs: 0) == 1, "past its absolute expiry")
            try await accounts.deleteSession(idHash: "nothing")
        }
    }

    @Test(arguments: Backend.cases) func tokensAreCappedRevokedAndTheirFirstUseIsReportedOnce(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let accounts = stores.accounts
            let user = try await accounts.createUser(name: "dave", role: .operator, passwordHash: "h", nowMs: 0)
            func token(_ n: Int, expires: Int64? = nil) -> APITokenRecord {
                APITokenRecord(
                    id: 0,
                    userID: user.id,
                    name: "t\(n)",
                    role: .viewer,
                    prefix: "p\(n)",
                    hash: "h\(n)",
                    createdAtMs: 100,
                    expiresAtMs: expires
                )
            }
            let first = try await accounts.createToken(token(1), maxPerUser: 2)
            _ = try await accounts.createToken(token(2, expires: 50), maxPerUser: 2)  // already expired: not counted
            let third = try await accounts.createToken(token(3), maxPerUser: 2)
            await #expect(throws: AccountStoreError.tooManyTokens(limit: 2)) { try await accounts.createToken(token(4), maxPerUser: 2) }
            #expect(try await accounts.tokens(userID: user.id).map(\.name) == ["t3", "t2", "t1"])
            #expect(try await accounts.tokens(userID: nil).count == 3)
            #expect(try await accounts.markTokenUsed(id: first.id, nowMs: 200))
            #expect(try await !accounts.markTokenUsed(id: first.id, nowMs: 300))
            #expect(try await accounts.token(id: first.id)?.lastUsedAtMs == 300)
            let revoked = try await accounts.revokeToken(id: third.id, nowMs: 400)
            #expect(revoked?.revokedAtMs == 400)
            #expect(try await accounts.revokeToken(id: third.id, nowMs: 500)?.revokedAtMs == 400, "revoking again keeps the first time")
            #expect(try await accounts.revokeToken(id: 999, nowMs: 500) == nil)
            _ = try await accounts.createToken(token(5), maxPerUser: 2)
            #expect(try await !accounts.bootstrapTokenRevoked())
            try await accounts.revokeBootstrapToken(nowMs: 1)
            #expect(try await accounts.bootstrapTokenRevoked())
        }
    }

    @Test(arguments: Backend.cases) func auditEntriesFormAHashChainAndPageBothWays(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let accounts = stores.accounts
            var entries: [AuditEntry] = []
            for i in 1...5 {
                let draft = AuditDraft(
                    atMs: Int64(i * 10),
                    actor: i % 2 == 0 ? "user:alice" : "bootstrap",
                    role: "admin",
                    action: "queueCommand",
                    target: "device_id=D\(i)",
                    bodyDigest: "",
                    outcome: "201",
                    requestID: "r\(i)",
                    clientAddress: "127.0.0.1"
                )
                entries.append(try await accounts.appendAudit(draft))
            }
            #expect(entries.map(\.sequence) == [1, 2, 3, 4, 5])
            #expect(entries[0].previousHash == AuditEntry.genesis)
            for (previous, entry) in zip(entries, entries.dropFirst()) { #expect(entry.previousHash == previous.hash) }
            #expect(entries.allSatisfy { $0.isIntact })
            #expect(try await accounts.auditEntries(after: 0, limit: 10) == entries)
            #expect(try await accounts.auditEntries(after: 3, limit: 10).map(\.sequence) == [4, 5])
            #expect(try await accounts.auditEntries(filter: AuditFilter(), before: nil, limit: 2).map(\.sequence) == [5, 4])
            #expect(try await accounts.auditEntries(filter: AuditFilter(), before: 4, limit: 2).map(\.sequence) == [3, 2])
            #expect(try await accounts.auditEntries(filter: AuditFilter(actor: "user:alice"), before: nil, limit: 10).map(\.sequence) == [4, 2])
            #expect(try await accounts.auditEntries(filter: AuditFilter(target: "device_id=D3", sinceMs: 30), before: nil, limit: 10).count == 1)
            #expect(try await accounts.auditEntries(filter: AuditFilter(sinceMs: 40), before: nil, limit: 10).map(\.sequence) == [5, 4])
            // Any edited field breaks the entry's hash.
            var edited = entries[2]
            edited.draft.outcome = "200"
            #expect(!edited.isIntact)
        }
    }

    @Test(arguments: Backend.cases) func twoInstancesAtOnceKeepOneAuditChainTheTokenCapAndOneFirstUse(
        _ backend: Backend
    ) async throws {
        try await BackendStores.with(backend, instances: 2) { stores in
            let instances = stores.map(\.accounts)
            // 40 appends at once, alternating between the instances: one chain, no sequence twice.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        let draft = AuditDraft(
                            atMs: Int64(i),
                            actor: "user:u\(i % 3)",
                            role: "admin",
                            action: "a",
                            target: "t\(i)",
                            bodyDigest: "",
                            outcome: "200",
                            requestID: "r\(i)",
                            clientAddress: "127.0.0.1"
                        )
                        _ = try await instances[i % 2].appendAudit(draft)
                    }
                }
                try await group.waitForAll()
            }
            let chain = try await instances[1].auditEntries(after: 0, limit: 100)
            #expect(chain.map(\.sequence) == Array(1...40))
            #expect(chain.first?.previousHash == AuditEntry.genesis)
            #expect(chain.allSatisfy { $0.isIntact })
            for (previous, entry) in zip(chain, chain.dropFirst()) { #expect(entry.previousHash == previous.hash) }
            #expect(Set(chain.map(\.draft.target)).count == 40)

            // 12 token creations at once under a cap of 3: exactly 3 are stored.
            let user = try await instances[0].createUser(name: "erin", role: .operator, passwordHash: "h", nowMs: 0)
            let created = try await withThrowingTaskGroup(of: APITokenRecord?.self) { group in
                for i in 0..<12 {
                    group.addTask {
                        let token = APITokenRecord(
                            id: 0,
                            userID: user.id,
                            name: "t\(i)",
                            role: .viewer,
                            prefix: "p\(i)",
                            hash: "h\(i)",
                            createdAtMs: 1,
                            expiresAtMs: nil
                        )
                        do { return try await instances[i % 2].createToken(token, maxPerUser: 3) } catch AccountStoreError.tooManyTokens {
                            return nil
                        }
                    }
                }
                return try await group.reduce(into: [APITokenRecord]()) { if let token = $1 { $0.append(token) } }
            }
            #expect(created.count == 3)
            #expect(try await instances[1].tokens(userID: user.id).count == 3)

            // Its first use, recorded by both instances at once 10 times: reported once.
            let token = try #require(created.first)
            let firsts = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<10 { group.addTask { try await instances[i % 2].markTokenUsed(id: token.id, nowMs: 10 + Int64(i)) } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(firsts == 1)
            #expect(try await instances[0].token(id: token.id)?.lastUsedAtMs == 19)
        }
    }

    @Test(arguments: Backend.cases) func deviceKeysAreProvisionedRotatedPromotedAndRevoked(_ backend: Backend) async throws {
        try await BackendStores.with(backend) { stores in
            let keys = stores.telemetry
            let k1 = [UInt8](repeating: 1, count: 32)
            let k2 = [UInt8](repeating: 2, count: 32)
            #expect(try await keys.deviceCredentials().isEmpty)
            #expect(try await keys.provisionDevice("P1", key: k1, replace: false, nowMs: 100))
            #expect(try await stores.devices.device("P1")?.admission == "operator", "provisioning admits the device")
            #expect(try await !keys.provisionDevice("P1", key: k2, replace: false, nowMs: 101), "a key is not replaced silently")
            #expect(try await keys.deviceCredential("P1") == DeviceCredential(key: k1, updatedAtMs: 100))

            try await keys.setNextDeviceKey(deviceID: "P1", key: k2, nowMs: 200)
            #expect(try await keys.deviceCredential("P1")?.nextKey == k2)
            #expect(try await keys.promoteNextDeviceKey(deviceID: "P1", nowMs: 300))
            #expect(try await keys.deviceCredential("P1") == DeviceCredential(key: k2, nextKey: nil, updatedAtMs: 300))
            #expect(try await !keys.promoteNextDeviceKey(deviceID: "P1", nowMs: 301), "nothing to promote")

            // A device on the fleet key gets a next key: its current stays the fleet key until the switch.
            try await keys.setNextDeviceKey(deviceID: "F1", key: k1, nowMs: 400)
            #expect(try await keys.deviceCredential("F1") == DeviceCredential(key: nil, nextKey: k1, updatedAtMs: 400))

            #expect(try await keys.revokeDevice(deviceID: "P1", nowMs: 500))
            #expect(try await !keys.revokeDevice(deviceID: "P1", nowMs: 501))
            #expect(try await keys.deviceCredential("P1")?.revokedAtMs == 500)
            #expect(try await keys.provisionDevice("P1", key: k1, replace: true, nowMs: 600), "re-provisioning lifts a revocation")
            #expect(try await keys.deviceCredential("P1") == DeviceCredential(key: k1, updatedAtMs: 600))

            try await keys.setDeviceKey(deviceID: "P1", key: nil)
            #expect(try await keys.deviceCredentials().keys.sorted() == ["F1"])
        }
    }

    /// Two operators provisioning one new device at once, on two instances: one key is stored and only its caller hears
    /// so; the other is told the device has a key (a key is never replaced silently).
    @Test(arguments: Backend.cases) func twoProvisionsOfOneNewDeviceAtOnceStoreOneKey(_ backend: Backend) async throws {
        try await BackendStores.with(backend, instances: 2) { stores in
            let instances = stores.map(\.telemetry)
            for round in 0..<12 {
                let device = "PP-\(round)"
                let keys = [[UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32)]
                async let first = instances[0].provisionDevice(device, key: keys[0], replace: false, nowMs: 100)
                async let second = instances[1].provisionDevice(device, key: keys[1], replace: false, nowMs: 100)
                let stored = try await [first, second]
                #expect(stored.filter { $0 }.count == 1, "\(device): \(stored)")
                let winner = stored[0] ? keys[0] : keys[1]
                #expect(try await instances[round % 2].deviceCredential(device)?.key == winner, "\(device)")
            }
        }
    }

    @Test(arguments: Backend.cases) func refusedUploadsKeepTheIdPendingWithACount(_ backend: Backend) async throws {
        var caps = RetentionPolicy()
        caps.maxPendingDevices = 2
        try await BackendStores.with(backend, retention: caps) { stores in
            try await stores.telemetry.recordRefusedUpload(deviceID: "X1", nowMs: 1_000)
            try await stores.telemetry.recordRefusedUpload(deviceID: "X1", nowMs: 2_000)
            let row = try #require(try await stores.devices.device("X1"))
            #expect(row.admission == "pending" && row.refusedUploads == 2)
            #expect(row.firstSeenMs == 1_000 && row.lastSeenMs == 2_000)
            #expect(try await stores.telemetry.ingestState(deviceID: "X1").admitted == false)
            try await stores.telemetry.recordRefusedUpload(deviceID: "X2", nowMs: 3_000)
            try await stores.telemetry.recordRefusedUpload(deviceID: "X3", nowMs: 4_000)
            #expect(try await stores.devices.device("X1") == nil, "pending ids stay bounded: the oldest is dropped")
            #expect(
                try await stores.devices.devices(after: nil, limit: 10, filter: DeviceFilter(admission: "pending")).map(\.deviceID) == ["X2", "X3"]
            )
            _ = try await stores.devices.updateDevice("X2", fields: DeviceFields())
            #expect(try await stores.telemetry.ingestState(deviceID: "X2").admitted, "an operator accepted it")
        }
    }
}
