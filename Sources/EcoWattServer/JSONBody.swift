import EcoWattProtocol
import Hummingbird
import NIOCore

/// Builds JSON responses from ``JSONValue``s.
public enum JSONBody {
    /// A response whose body is the compact JSON object `members`.
    public static func response(
        status: HTTPResponse.Status = .ok,
        _ members: KeyValuePairs<String, JSONValue>
    )
        -> Response
    {
        response(status: status, .object(members.map { ($0.key, $0.value) }))
    }

    /// A response whose body is `value` as compact JSON.
    public static func response(status: HTTPResponse.Status = .ok, _ value: JSONValue) -> Response {
        let bytes = value.serializedBytes
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }
}
