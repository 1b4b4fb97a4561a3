import EcoWattProtocol
import Foundation
import HTTPTypes
import OpenAPIRuntime

/// Bounds every JSON body of the operator API and refuses one that is not JSON with 400, before the generated code
/// decodes it: its decoder reports a value of the wrong type and broken JSON alike, and the answer should say which.
struct RequestBodyCheck: ServerMiddleware {
    let maxJSONBytes: Int

    func intercept(
        _ request: HTTPRequest,
        body: HTTPBody?,
        metadata: ServerRequestMetadata,
        operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        guard let body, request.headerFields[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            return try await next(request, body, metadata)
        }
        var bytes: [UInt8] = []
        for try await chunk in body {
            guard bytes.count + chunk.count <= maxJSONBytes else {
                throw APIError(.contentTooLarge, "A JSON body of the operator API is at most \(maxJSONBytes) bytes", code: "too_large")
            }
            bytes.append(contentsOf: chunk)
        }
        // An empty body (a DELETE sent with a JSON content type) is left to the operation.
        if !bytes.isEmpty {
            do {
                _ = try JSONParser.parse(bytes)
            } catch {
                throw APIError(.badRequest, "Malformed JSON body: \(error.description)", code: "malformed_json")
            }
        }
        return try await next(request, bytes.isEmpty ? nil : HTTPBody(bytes), metadata)
    }
}
