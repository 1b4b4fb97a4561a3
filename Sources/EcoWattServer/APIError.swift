import EcoWattProtocol
import HTTPTypes
import Hummingbird

/// The fixed set of client-error codes derived from a status.
public enum ErrorCode {
    /// The response header carrying ``APIError/code``.
    public static let header = HTTPField.Name("X-EcoWatt-Error")!

    public static func of(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 408: "timeout"
        case 409: "conflict"
        case 413: "too_large"
        case 422: "unprocessable"
        case 429: "rate_limited"
        case 503: "unavailable"
        default: status.code >= 500 ? "server_error" : "client_error"
        }
    }
}

/// An error answered as `{"success":false,"error":"<reason>"}` with its HTTP status (under `/api/`, the operator API's
/// error object: ``JSONErrorMiddleware``).
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    /// The text sent in `error`.
    public var reason: String
    /// A short machine-readable reason from a fixed set (metrics label, `X-EcoWatt-Error` header, log summaries).
    public var code: String
    /// Members added to the body after `success` and `error`.
    public var details: [(String, JSONValue)] = []
    /// Headers added to the answer (`Retry-After` of a 429).
    public var headers: [(HTTPField.Name, String)] = []

    /// - Parameter code: a fixed label (defaults to one derived from `status`).
    public init(_ status: HTTPResponse.Status, _ reason: String, code: String? = nil) {
        self.status = status
        self.reason = reason
        self.code = code ?? ErrorCode.of(status)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONBody.response(status: status, .object([("success", .bool(false)), ("error", .string(reason))] + details))
    }

    /// The answer to a refused envelope: 400 for a body that is not JSON, 401 otherwise (spec §2.4).
    public init(_ error: SecurityError) {
        switch error {
        case .malformedBody, .encrypted: self.init(.badRequest, error.reason, code: error.clientCategory)
        default: self.init(.unauthorized, "Security validation failed: \(error.reason)", code: error.clientCategory)
        }
    }
}
