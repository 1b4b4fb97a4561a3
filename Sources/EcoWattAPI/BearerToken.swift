import Foundation
import HTTPTypes
import OpenAPIRuntime
import Synchronization

/// Sends the operator token with every request of the generated client (`Authorization: Bearer …`).
public struct BearerToken: ClientMiddleware {
    let token: String

    public init(_ token: String) {
        self.token = token
    }

    public func intercept(
        _ request: HTTPRequest,
        body: HTTPBody?,
        baseURL: URL,
        operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.authorization] = "Bearer \(token)"
        return try await next(request, body, baseURL)
    }
}

/// A browser-style session for clients that log in with a password (`ecowatt token create --user`): keeps the cookie
/// `POST /api/v1/auth/login` sets and sends it, with the CSRF token, on every later request.
public final class SessionCookie: ClientMiddleware, Sendable {
    private let state = Mutex((cookie: String?.none, csrf: String?.none))

    public init() {}

    /// The CSRF token of the login answer.
    public func setCSRFToken(_ token: String) { state.withLock { $0.csrf = token } }

    public func intercept(
        _ request: HTTPRequest,
        body: HTTPBody?,
        baseURL: URL,
        operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        let (cookie, csrf) = state.withLock { ($0.cookie, $0.csrf) }
        if let cookie { request.headerFields[.cookie] = cookie }
        if let csrf { request.headerFields[HTTPField.Name("X-CSRF-Token")!] = csrf }
        let (response, responseBody) = try await next(request, body, baseURL)
        if let set = response.headerFields[.setCookie], let pair = set.split(separator: ";").first {
            state.withLock { $0.cookie = String(pair) }
        }
        return (response, responseBody)
    }
}
