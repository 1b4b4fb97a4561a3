import EcoWattProtocol
import EcoWattStorage
import Hummingbird
import Logging
import OpenAPIRuntime

/// Turns every error into JSON with a fitting status (never a crash, never an HTML page), and names its reason from a
/// fixed set in the `X-EcoWatt-Error` header (``ErrorCode``), which ``RequestLogMiddleware`` counts and logs.
///
/// Under `/api/` the body is the operator API's `{"error":{"code","message","details"}}`; device routes keep the
/// firmware-era `{"success":false,"error":…}`. A path that exists with other methods answers 405 with `Allow`.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteTable
    /// Where the causes of 5xx go (a database's message, an unexpected error): rate-limited, since while the disk is
    /// full every request fails the same way.
    let serverErrors: RateLimitedLog

    public init(serverErrors: RateLimitedLog) {
        routes = .documented
        self.serverErrors = serverErrors
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        var error: APIError
        do {
            return try await next(request, context)
        } catch let thrown {
            error = Self.apiError(thrown, request: request, context: context) { kind, message, cause in
                let metadata: Logger.Metadata = ["error": "\(cause.logDescription)", "path": LogText.value(request.uri.path)]
                serverErrors.log(level: .error, kind: kind, message, metadata: metadata, via: context.logger)
            }
        }
        var allow: [HTTPRequest.Method] = []
        if error.status == .notFound, error.code == "not_found" || error.code == "no_route" {
            allow = routes.methods(forPath: request.uri.path)
            if !allow.isEmpty, !allow.contains(request.method) {
                error = APIError(.methodNotAllowed, "\(request.method) is not allowed here; use \(Self.list(allow))", code: "method_not_allowed")
            }
        }
        var response =
            request.uri.path.hasPrefix("/api/")
            ? JSONBody.response(
                status: error.status,
                .object([
                    (
                        "error",
                        .object(
                            [("code", .string(error.code)), ("message", .string(error.reason))]
                                + (error.details.isEmpty ? [] : [("details", .object(error.details))])
                        )
                    )
                ])
            ) : try error.response(from: request, context: context)
        response.headers[ErrorCode.header] = error.code
        for (name, value) in error.headers { response.headers[name] = value }
        if error.status == .methodNotAllowed { response.headers[.allow] = Self.list(allow) }
        return response
    }

    static func list(_ methods: [HTTPRequest.Method]) -> String { methods.map(\.rawValue).joined(separator: ", ") }

    /// What a 5xx hides from the client, for the log: its kind (`storage failure`, `unhandled error`), a message and the
    /// error.
    typealias CauseLog = (_ kind: String, _ message: Logger.Message, _ error: any Error) -> Void

    /// The answer to `error`: services' and routes' errors as they say, the operator API's decoding failures as 400
    /// (malformed) or 422 (valid JSON that does not fit the schema), a database's error as 503 `storage`, anything else
    /// a 500. `log` is told the cause of the last two (``AccessMiddleware`` asks for the status only).
    static func apiError(_ error: any Error, request: Request, context: Context, log: CauseLog? = nil) -> APIError {
        switch error {
        case let api as APIError: return api
        case let mapped as any APIErrorConvertible: return mapped.apiError
        case let server as ServerError:
            // The generated operator API wraps what a handler throws, and its own decoding failures.
            switch server.underlyingError {
            case let decoding as DecodingError:
                // The generated code decodes parameters with a decoder too: a body it could not decode is 422, a
                // parameter 400.
                let hasJSONBody =
                    server.request.headerFields[.contentType]?.lowercased().hasPrefix("application/json") == true
                    && [.post, .put, .patch].contains(server.request.method)
                if hasJSONBody { return Self.decodingError(decoding) }
                return APIError(.badRequest, "A parameter is invalid: \(server.causeDescription)", code: "invalid")
            case is APIError, is any APIErrorConvertible, is HTTPError, is any StorageBackendError:
                return apiError(server.underlyingError, request: request, context: context, log: log)
            default:
                if server.httpStatus.code >= 400, server.httpStatus.code < 500 {
                    return APIError(server.httpStatus, server.causeDescription, code: "invalid")
                }
                // A request the generated code could not take apart (a missing or malformed parameter, a content type).
                if server.operationOutput == nil, !(server.underlyingError is CancellationError) {
                    return APIError(.badRequest, "\(server.causeDescription): \(server.underlyingError)", code: "invalid")
                }
                return unhandled(server.underlyingError, log: log)
            }
        case let http as HTTPError:
            if http.status == .notFound, http.body == nil { return APIError(.notFound, "No route \(request.uri.path)", code: "no_route") }
            return APIError(http.status, http.body ?? http.status.reasonPhrase)
        case let http as any HTTPResponseError: return APIError(http.status, http.status.reasonPhrase)
        case let decoding as DecodingError: return decodingError(decoding)
        case is any StorageBackendError:
            log?("storage failure", "storage failure", error)
            return APIError(.serviceUnavailable, "The database did not take the request; retry later", code: "storage")
        default: return unhandled(error, log: log)
        }
    }

    static func decodingError(_ error: DecodingError) -> APIError {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return keys.isEmpty ? "the body" : keys
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            // The operator API checked the syntax first (``RequestBodyCheck``): Foundation's decoder says "not valid
            // JSON" for a number of the wrong type too.
            return APIError(.unprocessableContent, "The body does not fit the schema (a value of the wrong type)", code: "invalid")
        case .keyNotFound(let key, let context):
            return APIError(.unprocessableContent, "\(key.stringValue) is required in \(path(context))", code: "invalid")
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return APIError(.unprocessableContent, "\(path(context)): \(context.debugDescription)", code: "invalid")
        @unknown default:
            return APIError(.unprocessableContent, "The body does not fit the schema", code: "invalid")
        }
    }

    static func unhandled(_ error: any Error, log: CauseLog?) -> APIError {
        log?("unhandled error", "unhandled error", error)
        return APIError(.internalServerError, "Internal server error")
    }
}
