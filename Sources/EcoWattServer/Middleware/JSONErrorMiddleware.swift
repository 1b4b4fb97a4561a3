import EcoWattProtocol
import Hummingbird
import Logging

/// Turns every error into `{"success":false,"error":…}` with a fitting status (never a crash, never an HTML page), and
/// names its reason from a fixed set in the `X-EcoWatt-Error` header (``ErrorCode``), which ``RequestLogMiddleware``
/// counts and logs.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        let error: APIError
        do {
            return try await next(request, context)
        } catch let api as APIError {
            error = api
        } catch let mapped as any APIErrorConvertible {
            error = mapped.apiError
        } catch let reasoned as any ReasonedError {
            error = APIError(reasoned.status, reasoned.reason, code: reasoned.code)
        } catch let http as HTTPError {
            error = APIError(http.status, http.body ?? http.status.reasonPhrase)
        } catch let http as any HTTPResponseError {
            error = APIError(http.status, http.status.reasonPhrase)
        } catch is DecodingError {
            error = APIError(.badRequest, "Malformed JSON body", code: "malformed_json")
        } catch let unhandled {
            context.logger.error(
                "unhandled error",
                metadata: ["error": "\(unhandled)", "path": LogText.value(request.uri.path)]
            )
            error = APIError(.internalServerError, "Internal server error")
        }
        var response = try error.response(from: request, context: context)
        response.headers[ErrorCode.header] = error.code
        return response
    }
}
