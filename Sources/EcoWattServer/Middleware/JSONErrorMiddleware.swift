import EcoWattProtocol
import Hummingbird
import Logging

/// Turns every error into `{"success":false,"error":…}` with a fitting status (never a crash, never an HTML page).
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as any ReasonedError {
            response = try APIError(error.status, error.reason).response(from: request, context: context)
        } catch let error as HTTPError {
            response = try APIError(error.status, error.body ?? error.status.reasonPhrase)
                .response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            response = try APIError(error.status, error.status.reasonPhrase).response(from: request, context: context)
        } catch is DecodingError {
            response = try APIError(.badRequest, "Malformed JSON body").response(from: request, context: context)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            response = try APIError(.internalServerError, "Internal server error")
                .response(from: request, context: context)
        }
        return response
    }
}
