/// The OpenAPI document the types, server protocol and client are generated from, as served at
/// `/api/v1/openapi.json`.
public enum OpenAPIDocument {
    public static var bytes: [UInt8] { PackageResources.openapi_json }
}
