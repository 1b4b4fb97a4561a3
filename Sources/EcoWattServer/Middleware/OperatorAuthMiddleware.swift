import Crypto
import EcoWattProtocol
import Hummingbird

/// Requires `Authorization: Bearer <operator token>` (compared in constant time) on operator routes.
public struct OperatorAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    private let tokenDigest: SHA256.Digest

    public init(token: String) {
        tokenDigest = SHA256.hash(data: Array(token.utf8))
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        // The scheme is case-insensitive (RFC 9110 §11.1): "bearer", "BEARER" and "Bearer" are the same.
        guard let header = request.headers[.authorization], header.count > 7, header.prefix(7).lowercased() == "bearer " else {
            throw APIError(.unauthorized, "Operator token required: send 'Authorization: Bearer <token>'")
        }
        // Comparing digests keeps the comparison constant-time and independent of the token length.
        let presented = SHA256.hash(data: Array(header.dropFirst(7).drop(while: { $0 == " " }).utf8))
        guard presented == tokenDigest else { throw APIError(.unauthorized, "Invalid operator token") }
        return try await next(request, context)
    }
}
