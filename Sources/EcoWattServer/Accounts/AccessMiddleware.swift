import Crypto
import EcoWattProtocol
import EcoWattStorage
import HTTPTypes
import Hummingbird

/// Authentication, the role matrix, CSRF and the audit trail of every operator route (issue 19), in one middleware.
///
/// A route without a rule in ``AccessPolicy`` is refused (fails closed; the matrix test finds it). Requests carry a
/// bearer token (the bootstrap token or an API token) or a session cookie; state-changing requests by cookie must come
/// from the same site and echo the session's CSRF token in `X-CSRF-Token`. Every state-changing request that passed
/// authentication (and every login attempt that was not throttled) appends one audit entry with its outcome.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = EcoWattRequestContext
    let accounts: AccountService
    let addresses: ClientAddressResolver
    let policy: AccessPolicy
    /// Largest body digested for the audit trail (a firmware image).
    let maxBodyBytes: Int

    static let requestIDHeader = HTTPField.Name("X-Request-Id")!
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!
    static let fetchSiteHeader = HTTPField.Name("Sec-Fetch-Site")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = context.endpointPath ?? request.uri.path
        guard let rule = policy.rule(method: request.method, path: path) else {
            throw APIError(.forbidden, "\(request.method) \(path) is not in the access matrix", code: "not_in_matrix")
        }
        let principal: Principal?
        do {
            principal = try await accounts.authenticate(
                authorization: request.headers[.authorization],
                cookie: request.headers[values: .cookie].joined(separator: "; ")
            )
        } catch {
            // A public route (the login) ignores stale credentials: a browser with an expired cookie logs in again.
            guard rule.role == nil else { throw error.apiError }
            principal = nil
        }
        if let required = rule.role {
            guard let principal else {
                throw APIError(.unauthorized, "Authentication required: 'Authorization: Bearer <token>' or a session", code: "unauthorized")
            }
            guard principal.role >= required else {
                throw APIError(.forbidden, "This needs the \(required.rawValue) role; you have \(principal.role.rawValue)", code: "forbidden")
            }
        }
        let changesState = ![.get, .head, .options].contains(request.method)
        if changesState, rule.role != nil, case .session(_, let csrf)? = principal?.kind {
            try Self.checkSameSite(request, csrf: csrf)
        } else if changesState, rule.role == nil {
            // A login from another site (login CSRF) is refused too; it has no token to check yet.
            try Self.checkSameSite(request, csrf: nil)
        }
        let identity = RequestIdentity(
            principal: principal,
            clientAddress: addresses.address(request, context),
            requestID: Self.randomID()
        )
        guard changesState else {
            var response = try await RequestIdentity.$current.withValue(identity) { try await next(request, context) }
            response.headers[Self.requestIDHeader] = identity.requestID
            return response
        }
        var request = request
        var digest = ""
        if rule.redactBody {
            digest = "redacted"
        } else {
            do {
                let body = try await request.collectBody(upTo: maxBodyBytes)
                if body.readableBytes > 0 { digest = body.withUnsafeReadableBytes { HexCoding.encode(Array(SHA256.hash(data: $0))) } }
            } catch {
                // Too large (413) or cut off: refused, and recorded as such.
                await record(rule, identity, principal, context, digest: "", outcome: "\(Self.status(of: error, request, context))")
                throw error
            }
        }
        let outcome: String
        var answer: Result<Response, any Error>
        do {
            answer = .success(try await RequestIdentity.$current.withValue(identity) { try await next(request, context) })
            outcome = "\(try answer.get().status.code)"
        } catch {
            answer = .failure(error)
            outcome = "\(Self.status(of: error, request, context))"
        }
        await record(rule, identity, principal, context, digest: digest, outcome: outcome)
        var response = try answer.get()
        response.headers[Self.requestIDHeader] = identity.requestID
        if let cookie = identity.notedCookie { response.headers[.setCookie] = cookie }
        return response
    }

    /// Appends the request's audit entry. Throttled logins are counted, not audited: a flood must not grow the trail.
    private func record(
        _ rule: AccessPolicy.Rule,
        _ identity: RequestIdentity,
        _ principal: Principal?,
        _ context: Context,
        digest: String,
        outcome: String
    ) async {
        guard outcome != "429" else { return }
        await accounts.audit.record(
            AuditDraft(
                atMs: accounts.clock(),
                actor: identity.notedActor ?? principal?.actor ?? "anonymous",
                role: principal?.role.rawValue ?? "",
                action: rule.operationID,
                target: identity.notedTarget ?? Self.target(context),
                bodyDigest: digest,
                outcome: outcome,
                requestID: identity.requestID,
                clientAddress: identity.clientAddress
            )
        )
    }

    static func status(of error: any Error, _ request: Request, _ context: Context) -> UInt {
        UInt(JSONErrorMiddleware<Context>.apiError(error, request: request, context: context).status.code)
    }

    /// Same-site check and CSRF token of a state-changing request authenticated by cookie.
    static func checkSameSite(_ request: Request, csrf: String?) throws {
        if let site = request.headers[fetchSiteHeader], site != "same-origin", site != "none" {
            throw APIError(.forbidden, "Cross-site request refused (Sec-Fetch-Site: \(site))", code: "csrf")
        }
        if let origin = request.headers[.origin] {
            let host = request.head.authority ?? ""
            guard origin.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) == host else {
                throw APIError(.forbidden, "Cross-origin request refused (Origin: \(LogText.value(origin)))", code: "csrf")
            }
        }
        guard let csrf else { return }
        guard let presented = request.headers[csrfHeader],
            SHA256.hash(data: Array(presented.utf8)) == SHA256.hash(data: Array(csrf.utf8))
        else {
            throw APIError(.forbidden, "X-CSRF-Token missing or wrong (from the login answer or GET /api/v1/auth/me)", code: "csrf")
        }
    }

    /// The path parameters, `name=value` joined by `,` in name order.
    static func target(_ context: Context) -> String {
        context.parameters.map { "\($0.key)=\(OperatorAPI.auditText(String($0.value)))" }.sorted().joined(separator: ",")
    }

    static func randomID() -> String {
        HexCoding.encode((0..<8).map { _ in UInt8.random(in: .min ... .max) })
    }
}
