import EcoWattProtocol
import Hummingbird

/// A domain error with a human-readable reason, answered as `{"success":false,"error":"<reason>"}`.
public protocol ReasonedError: HTTPResponseError {
    /// The text sent in `error`.
    var reason: String { get }
}

/// An error answered as `{"success":false,"error":"<reason>"}` with its HTTP status.
public struct APIError: ReasonedError, Sendable {
    public var status: HTTPResponse.Status
    public var reason: String

    public init(_ status: HTTPResponse.Status, _ reason: String) {
        self.status = status
        self.reason = reason
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONBody.response(status: status, ["success": .bool(false), "error": .string(reason)])
    }

    /// The answer to a refused envelope: 400 for a body that is not JSON, 401 otherwise (spec §2.4).
    public init(_ error: SecurityError) {
        switch error {
        case .malformedBody: self.init(.badRequest, error.reason)
        default: self.init(.unauthorized, "Security validation failed: \(error.reason)")
        }
    }
}
