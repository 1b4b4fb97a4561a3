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
