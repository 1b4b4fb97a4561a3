import AsyncHTTPClient
import Crypto
import EcoWattAPI
import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import EcoWattStorage
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// A browser session in tests: the cookie and the CSRF token of a login.
struct TestSession {
    var cookie: String
    var csrf: String

    /// Headers of a request of this session (a state-changing one from the same site, with the token).
    var headers: HTTPFields {
        [.cookie: cookie, .contentType: "application/json", HTTPField.Name("X-CSRF-Token")!: csrf, HTTPField.Name("Sec-Fetch-Site")!: "same-origin"]
    }
}

extension TestClientProtocol {
    func login(_ name: String, _ password: String = AccountsHTTPTests.password) async throws -> TestSession {
        let response = try await postJSON("/api/v1/auth/login", #"{"name":"\#(name)","password":"\#(password)"}"#)
        try #require(response.status == .ok, "login \(name): \(String(buffer: response.body))")
        let cookie = try #require(response.headers[.setCookie]?.split(separator: ";").first.map(String.init))
        return TestSession(cookie: cookie, csrf: try #require(response.json["csrf_token"] as? String))
    }

    /// Creates a user with the bootstrap token.
    func createUser(_ name: String, role: String, server: TestServer) async throws {
        let response = try await operatorJSON(
            .post,
            "/api/v1/users",
            #"{"name":"\#(name)","role":"\#(role)","password":"\#(AccountsHTTPTests.password)"}"#,
            server: server
        )
        try #require(response.status == .created, "create \(name): \(String(buffer: response.body))")
    }

    /// Creates an API token through a session; returns the secret and the id.
    func createToken(_ session: TestSession, name: String, role: String? = nil, days: Int? = nil) async throws -> (secret: String, id: Int) {
        var fields = [#""name":"\#(name)""#]
        if let role { fields.append(#""role":"\#(role)""#) }
        if let days { fields.append(#""expires_in_days":\#(days)"#) }
        let response = try await execute(
            uri: "/api/v1/tokens",
            method: .post,
            headers: session.headers,
            body: ByteBuffer(string: "{\(fields.joined(separator: ","))}")
        )
        try #require(response.status == .created, "token \(name): \(String(buffer: response.body))")
        let token = try #require(response.json["token"] as? [String: Any])
        return (try #require(response.json["secret"] as? String), try #require(token["id"] as? Int))
    }
}

/// Operator accounts, sessions, tokens, the role matrix and the audit trail over HTTP (issue 19).
@Suite struct AccountsHTTPTests {
    static let password = "a long test passphrase 7"

    /// Every operator route, every role, no credentials, an expired token, a revoked token and a disabled user: the
    /// declared matrix holds, and a route without a rule would be refused by the middleware (and fail here).
    @Test func theRoleMatrixHoldsForEveryOperatorRouteAndEveryKindOfCredential() async throws {
        let test = try await TestServer()
        let policy = AccessPolicy.documented
        // Every documented operator operation (and /metrics) has a rule.
        let document = try JSONParser.parse(OpenAPIDocument.bytes)
        guard case .object(let paths)? = document["paths"] else { throw CancellationError() }
        var routes: [(method: HTTPRequest.Method, path: String)] = []
        for (path, item) in paths {
            guard case .object(let operations) = item else { continue }
            for (method, operation) in operations {
                let tags = operation["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
                guard !tags.contains("device-protocol") || path == "/metrics" else { continue }
                let httpMethod = try #require(HTTPRequest.Method(method.uppercased()))
                #expect(policy.rule(method: httpMethod, path: path) != nil, "\(method) \(path) is not in the access matrix")
                routes.append((httpMethod, path))
            }
        }
        #expect(routes.count >= 60)
        // What the roles mean (issue 19): admin for users, tokens of others, keys, nonce resets, faults, deletions and
        // the audit trail; viewers read the rest; operators change it.
        for (method, path) in routes {
            let role = policy.rule(method: method, path: path)?.role
            let adminOnly =
                ["/api/v1/users", "/api/v1/audit", "/credentials", "/nonce", "/accept", "/bootstrap-token"].contains { path.contains($0) }
                || (path.hasPrefix("/api/v1/faults") && method != .get)
                || (method == .delete
                    && !["/api/v1/commands/{command_id}", "/api/v1/devices/{device_id}/config/pending", "/api/v1/tokens/{token_id}"].contains(path))
            if adminOnly {
                #expect(role == .admin, "\(method) \(path)")
            } else if path.hasPrefix("/api/v1/auth/") || path.hasPrefix("/api/v1/tokens") {
                #expect(
                    role == .viewer || path.hasSuffix("/login") || path.hasSuffix("/me"),
                    "\(method) \(path): every user manages their own session and tokens"
                )
            } else {
                #expect(role == (method == .get ? .viewer : .operator), "\(method) \(path)")
            }
        }
        let walked = routes
        try await test.run { client in
            #expect(try await client.execute(uri: "/api/v1/devices", method: .get, headers: test.operatorHeaders).status == .ok)
            var tokens: [Role: String] = [:]
            for role in Role.allCases {
                try await client.createUser("user-\(role.rawValue)", role: role.rawValue, server: test)
                let session = try await client.login("user-\(role.rawValue)")
                tokens[role] = try await client.createToken(session, name: "matrix", days: 1).secret
            }
            func call(_ route: (method: HTTPRequest.Method, path: String), token: String?) async throws -> TestResponse {
                // Placeholders no stored object has: the walk must not change what the other credentials see.
                let path =
                    route.path.replacing(try Regex(#"\{[a-z_]+\}"#), with: "999999") + (route.path == "/api/v1/events" ? "?max_seconds=1" : "")
                var headers: HTTPFields = [.contentType: "application/json"]
                if let token { headers[.authorization] = "Bearer \(token)" }
                return try await client.execute(uri: path, method: route.method, headers: headers, body: ByteBuffer(string: "{}"))
            }
            for route in walked {
                let rule = try #require(policy.rule(method: route.method, path: route.path))
                let anonymous = try await call(route, token: nil)
                #expect(anonymous.headers[ErrorCode.header] != "not_in_matrix")
                if rule.role == nil {
                    #expect(anonymous.status != .unauthorized || route.path.hasSuffix("/login"), "\(route.method) \(route.path) is public")
                } else {
                    #expect(anonymous.status == .unauthorized, "\(route.method) \(route.path) without credentials: \(anonymous.status)")
                }
                for role in Role.allCases {
                    let response = try await call(route, token: tokens[role])
                    let allowed = rule.role.map { role >= $0 } ?? true
                    if allowed {
                        // A handler may refuse for its own reason (fault injection off: 403 `disabled`), never the matrix.
                        #expect(
                            response.status != .unauthorized && response.headers[ErrorCode.header] != "forbidden",
                            "\(route.method) \(route.path) as \(role): \(response.status) \(String(buffer: response.body))"
                        )
                    } else {
                        #expect(response.status == .forbidden, "\(route.method) \(route.path) as \(role): \(response.status)")
                    }
                }
            }
            // The walk revoked the bootstrap token (DELETE /api/v1/auth/bootstrap-token as admin): it never works again.
            #expect(try await client.execute(uri: "/api/v1/devices", method: .get, headers: test.operatorHeaders).status == .unauthorized)
            #expect(!FileManager.default.fileExists(atPath: test.server.configuration.security.operatorTokenPath))
            let admin: HTTPFields = [.authorization: "Bearer \(tokens[.admin]!)", .contentType: "application/json"]
            func patch(_ user: String, _ body: String) async throws -> TestResponse {
                try await client.execute(uri: "/api/v1/users/\(user)", method: .patch, headers: admin, body: ByteBuffer(string: body))
            }
            let probe = (HTTPRequest.Method.get, "/api/v1/devices")
            // A disabled user's token stops working; enabled again, it works.
            var response = try await patch("user-operator", #"{"disabled":true}"#)
            #expect(response.status == .ok)
            #expect(try await call(probe, token: tokens[.operator]).status == .unauthorized)
            response = try await patch("user-operator", #"{"disabled":false}"#)
            #expect(try await call(probe, token: tokens[.operator]).status == .ok)
            // A lowered role caps the token: an operator token of a user made viewer is a viewer token.
            _ = try await patch("user-operator", #"{"role":"viewer"}"#)
            // The last active admin cannot be demoted.
            #expect(try await patch("user-admin", #"{"role":"operator"}"#).status == .conflict)
            #expect(try await call((.post, "/api/v1/devices/{device_id}/commands"), token: tokens[.operator]).status == .forbidden)
            // A revoked token is refused.
            let viewer = try await client.login("user-viewer")
            let revoked = try await client.createToken(viewer, name: "to-revoke")
            #expect(try await call(probe, token: revoked.secret).status == .ok)
            response = try await client.execute(uri: "/api/v1/tokens/\(revoked.id)", method: .delete, headers: viewer.headers)
            #expect(response.status == .ok)
            #expect(try await call(probe, token: revoked.secret).status == .unauthorized)
            // Expired: the tokens were made for one day.
            test.clock.set(test.clock.now + 2 * 86_400_000)
            let expired = try await call(probe, token: tokens[.admin])
            #expect(expired.status == .unauthorized && String(buffer: expired.body).contains("expired"))
        }
    }

    @Test func stateChangingRequestsOfASessionNeedTheCSRFTokenAndTheSameSite() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await client.createUser("olivia", role: "operator", server: test)
            let session = try await client.login("olivia")
            let body = ByteBuffer(string: #"{"device_id":"CSRF-1"}"#)
            // Reading needs no token.
            var response = try await client.execute(uri: "/api/v1/devices", method: .get, headers: [.cookie: session.cookie])
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            var headers = session.headers
            headers[HTTPField.Name("X-CSRF-Token")!] = nil
            response = try await client.execute(uri: "/api/v1/devices", method: .post, headers: headers, body: body)
            #expect(response.status == .forbidden && response.headers[ErrorCode.header] == "csrf")
            headers = session.headers
            headers[HTTPField.Name("X-CSRF-Token")!] = "forged"
            response = try await client.execute(uri: "/api/v1/devices", method: .post, headers: headers, body: body)
            #expect(response.status == .forbidden && response.headers[ErrorCode.header] == "csrf")
            headers = session.headers
            headers[HTTPField.Name("Sec-Fetch-Site")!] = "cross-site"
            response = try await client.execute(uri: "/api/v1/devices", method: .post, headers: headers, body: body)
            #expect(response.status == .forbidden && response.headers[ErrorCode.header] == "csrf")
            headers = session.headers
            headers[.origin] = "https://attacker.example"
            response = try await client.execute(uri: "/api/v1/devices", method: .post, headers: headers, body: body)
            #expect(response.status == .forbidden && response.headers[ErrorCode.header] == "csrf")
            response = try await client.execute(uri: "/api/v1/devices", method: .post, headers: session.headers, body: body)
            #expect(response.status == .created)
            // `me` gives the token back (a reloaded page); logout ends the session.
            response = try await client.execute(uri: "/api/v1/auth/me", method: .get, headers: [.cookie: session.cookie])
            #expect(response.json["csrf_token"] as? String == session.csrf && response.json["actor"] as? String == "user:olivia")
            response = try await client.execute(uri: "/api/v1/auth/logout", method: .post, headers: session.headers)
            #expect(response.status == .noContent && response.headers[.setCookie]?.contains("Max-Age=0") == true)
            response = try await client.execute(uri: "/api/v1/auth/me", method: .get, headers: [.cookie: session.cookie])
            #expect(response.status == .ok && response.json["kind"] as? String == "anonymous", "an ended session is anonymous")
            // A browser still sending the ended session's cookie logs in again; a login from another site is refused.
            let login = ByteBuffer(string: #"{"name":"olivia","password":"\#(Self.password)"}"#)
            response = try await client.execute(
                uri: "/api/v1/auth/login",
                method: .post,
                headers: [.cookie: session.cookie, .contentType: "application/json"],
                body: login
            )
            #expect(response.status == .ok)
            response = try await client.execute(
                uri: "/api/v1/auth/login",
                method: .post,
                headers: [.contentType: "application/json", HTTPField.Name("Sec-Fetch-Site")!: "cross-site"],
                body: login
            )
            #expect(response.status == .forbidden && response.headers[ErrorCode.header] == "csrf")
        }
    }

    @Test func aFloodOfAddressesKeepsTheLoginThrottleWithinItsCapacityAndTheNewestBlocked() {
        var policy = LoginThrottle.Policy()
        policy.freePerPair = 0
        policy.freePerAddress = 0
        policy.capacity = 10
        let throttle = LoginThrottle(policy: policy)
        let addresses = (0..<100).map { "10.0.0.\($0)" }
        for (index, address) in addresses.enumerated() { throttle.failed(user: "pat", address: address, nowMs: Int64(index)) }
        // Every back-off (1 s) still runs at 100 ms: an address not blocked any more was dropped by the cap.
        let blocked = addresses.filter { throttle.retryAfter(user: "pat", address: $0, nowMs: 100) != nil }
        #expect((9...10).contains(blocked.count), "\(blocked.count) addresses kept")
        #expect(blocked == Array(addresses.suffix(blocked.count)), "the newest stay: \(blocked)")
    }

    @Test func triesRefusedForAFullHashingQueueBackOffTheirAddressButNotItsPairs() {
        var policy = LoginThrottle.Policy()
        policy.freePerAddress = 3
        let throttle = LoginThrottle(policy: policy)
        for ms in 0..<3 { throttle.refused(address: "10.0.0.1", nowMs: Int64(ms)) }
        #expect(throttle.retryAfter(user: "pat", address: "10.0.0.1", nowMs: 3) == nil, "free tries first")
        throttle.refused(address: "10.0.0.1", nowMs: 3)
        #expect(throttle.retryAfter(user: "anyone", address: "10.0.0.1", nowMs: 4) == 1, "the address backs off for any user")
        #expect(throttle.retryAfter(user: "pat", address: "10.0.0.2", nowMs: 4) == nil, "other addresses do not")
        // The pair learnt nothing: once the address's back-off ends, pat is not behind on her own count.
        #expect(throttle.retryAfter(user: "pat", address: "10.0.0.1", nowMs: 1_004) == nil)
    }

    @Test func loginsAreThrottledPerUserAndAddressAndASuccessClearsIt() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await client.createUser("pat", role: "viewer", server: test)
            try await client.createUser("quinn", role: "viewer", server: test)
            let wrong = #"{"name":"pat","password":"not the password at all"}"#
            for _ in 1...6 {
                let response = try await client.postJSON("/api/v1/auth/login", wrong)
                #expect(response.status == .unauthorized && response.headers[ErrorCode.header] == "invalid_credentials")
            }
            var response = try await client.postJSON("/api/v1/auth/login", wrong)
            #expect(response.status == .tooManyRequests)
            #expect(response.headers[.retryAfter].flatMap(Int.init).map { $0 >= 1 } == true)
            // Even the right password waits: the pair is backing off.
            response = try await client.postJSON("/api/v1/auth/login", #"{"name":"pat","password":"\#(Self.password)"}"#)
            #expect(response.status == .tooManyRequests)
            // Another user from the same address is not locked out by pat's failures.
            _ = try await client.login("quinn")
            // After the back-off the right password works and clears the pair.
            test.clock.set(test.clock.now + 5_000)
            _ = try await client.login("pat")
            response = try await client.postJSON("/api/v1/auth/login", wrong)
            #expect(response.status == .unauthorized, "a fresh count after the success")
            // Unknown users fail the same way (and cost a hash too).
            response = try await client.postJSON("/api/v1/auth/login", #"{"name":"nobody","password":"whatever it is 1"}"#)
            #expect(response.status == .unauthorized && response.headers[ErrorCode.header] == "invalid_credentials")
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: test.operatorHeaders)
            let text = String(buffer: metrics.body)
            #expect(text.contains(#"ecowatt_logins_total{outcome="throttled"} 2"#))
            #expect(text.contains(#"ecowatt_logins_total{outcome="succeeded"} 2"#))
            // Failed logins are audited with the claimed name; throttled ones are not (a flood must not grow the trail).
            let audit = try await client.execute(uri: "/api/v1/audit?action=login&limit=1000", method: .get, headers: test.operatorHeaders)
            let entries = try #require(audit.json["items"] as? [[String: Any]])
            #expect(entries.filter { $0["outcome"] as? String == "401" }.count == 8)
            #expect(entries.filter { $0["outcome"] as? String == "200" }.count == 2)
            #expect(!entries.contains { $0["outcome"] as? String == "429" })
            #expect(entries.contains { $0["actor"] as? String == "login:pat" && $0["body_digest"] as? String == "redacted" })
        }
    }

    /// A client that sends its next try as soon as it has the answer is slowed by the refusal delay: a throttled login
    /// is answered no sooner than `login_refusal_delay_ms`, and never later than its `Retry-After`.
    @Test func aRefusedLoginIsAnsweredAfterTheRefusalDelayButWithinItsRetryAfter() async throws {
        for (delayMs, earliest, latest) in [(600, 0.6, 10.0), (5_000, 0.9, 4.0)] {
            let test = try await TestServer(settings: ["login_refusal_delay_ms": delayMs])
            try await test.run { client in
                try await client.createUser("tess", role: "viewer", server: test)
                let wrong = #"{"name":"tess","password":"not the password at all"}"#
                for _ in 1...6 { #expect(try await client.postJSON("/api/v1/auth/login", wrong).status == .unauthorized) }
                let clock = ContinuousClock()
                let start = clock.now
                let response = try await client.postJSON("/api/v1/auth/login", wrong)
                let elapsed = clock.now - start
                #expect(response.status == .tooManyRequests)
                // The first back-off is 1 s: the 5 s delay is cut to it.
                #expect(response.headers[.retryAfter] == "1")
                #expect(elapsed >= .seconds(earliest), "delay \(delayMs) ms: answered after \(elapsed)")
                #expect(elapsed < .seconds(latest), "delay \(delayMs) ms: answered after \(elapsed)")
            }
        }
    }

    /// bcrypt runs on one thread with a bounded queue: a flood of logins is answered 429 beyond it (after the refusal
    /// delay, before any database read), and uploads sent meanwhile are all accepted.
    @Test func aLoginFloodIsRefusedBeyondTheQueueAndUploadsKeepFlowing() async throws {
        let test = try await TestServer(settings: ["password_max_queued": 2, "password_cost": 12])
        test.clock.followWallClock()
        try await test.run { client in
            try await client.createUser("rita", role: "viewer", server: test)
            // Many connections at once (the test client is one connection, one request at a time).
            let port = try #require(client.port)
            let flood = Task {
                try await withThrowingTaskGroup(of: UInt.self) { group in
                    for i in 0..<24 {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/auth/login")
                            request.method = .POST
                            request.headers.add(name: "Content-Type", value: "application/json")
                            request.body = .bytes(ByteBuffer(string: #"{"name":"flood\#(i)","password":"wrong password here"}"#))
                            return try await HTTPClient.shared.execute(request, timeout: .seconds(60)).status.code
                        }
                    }
                    return try await group.reduce(into: [UInt]()) { $0.append($1) }
                }
            }
            var accepted = 0
            for nonce in UInt32(11_001)..<11_021 {
                let response = try await client.postJSON("/aggregated/FLOOD-1", Uploads.body(device: "FLOOD-1", nonce: nonce))
                if response.status == .ok { accepted += 1 }
            }
            let statuses = try await flood.value
            #expect(accepted == 20, "every upload during the flood is accepted")
            #expect(statuses.filter { $0 == 429 }.count >= 10, "beyond one hashing and two waiting, logins are refused")
            #expect(statuses.allSatisfy { $0 == 429 || $0 == 401 }, "\(statuses)")
        }
    }

    @Test func tokensAndSessionsAreStoredOnlyAsHashesAndTokensAreListedByPrefix() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await client.createUser("sam", role: "operator", server: test)
            let session = try await client.login("sam")
            let token = try await client.createToken(session, name: "ci", role: "viewer")
            #expect(token.secret.hasPrefix("ewt_") && token.secret.count >= 40)
            let sessionID = String(session.cookie.split(separator: "=")[1])
            // Read the tables and the whole file: neither secret is stored, their SHA-256 is.
            let file = try DatabaseInspector(path: test.server.configuration.storage.databasePath)
            let hashes = try file.rows("SELECT hash FROM api_tokens").map { $0["hash"].string }
            let sessions = try file.rows("SELECT id_hash FROM sessions").map { $0["id_hash"].string }
            #expect(hashes == [HexCoding.encode(Array(SHA256.hash(data: Array(token.secret.utf8))))])
            #expect(sessions == [HexCoding.encode(Array(SHA256.hash(data: Array(sessionID.utf8))))])
            let files = try FileManager.default.contentsOfDirectory(atPath: test.server.configuration.storage.dataDirectory)
            for file in files where file.hasPrefix("ecowatt.sqlite") {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: test.server.configuration.storage.dataDirectory).appendingPathComponent(file))
                #expect(bytes.range(of: Data(token.secret.utf8)) == nil && bytes.range(of: Data(sessionID.utf8)) == nil, "\(file)")
                #expect(bytes.range(of: Data(Self.password.utf8)) == nil, "\(file) holds no password")
            }
            let list = try await client.execute(uri: "/api/v1/tokens", method: .get, headers: [.authorization: "Bearer \(token.secret)"])
            let items = try #require(list.json["items"] as? [[String: Any]])
            #expect(items.count == 1 && items[0]["prefix"] as? String == String(token.secret.prefix(12)))
            #expect(!String(buffer: list.body).contains(token.secret))
            #expect(items[0]["last_used_at"] != nil, "its first use is recorded")
            // A viewer token cannot mint an operator token.
            let minted = try await client.execute(
                uri: "/api/v1/tokens",
                method: .post,
                headers: [.authorization: "Bearer \(token.secret)", .contentType: "application/json"],
                body: ByteBuffer(string: #"{"name":"up","role":"operator"}"#)
            )
            #expect(minted.status == .forbidden)
            // Names: lower-case letters, digits, '.', '_', '-', starting with a letter or digit.
            for name in ["Sam", "-sam", "sam smith", "", String(repeating: "s", count: 65)] {
                let response = try await client.operatorJSON(
                    .post,
                    "/api/v1/users",
                    #"{"name":"\#(name)","role":"viewer","password":"\#(Self.password)"}"#,
                    server: test
                )
                #expect(response.status == .unprocessableContent, "\(name)")
            }
            // Weak passwords are refused with the reason.
            for (password, reason) in [("short", "at least 12"), ("sam-password-123", "user name"), ("password1234", "too common")] {
                let response = try await client.operatorJSON(
                    .post,
                    "/api/v1/users",
                    #"{"name":"sam2","role":"viewer","password":"\#(password.replacingOccurrences(of: "sam-", with: "sam2-"))"}"#,
                    server: test
                )
                #expect(response.status == .unprocessableContent && String(buffer: response.body).contains(reason), "\(password)")
            }
        }
    }
}
