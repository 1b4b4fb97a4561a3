import EcoWattAPI
import EcoWattProtocol
import EcoWattServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import OpenAPIRuntime
import Testing

/// The OpenAPI document and the server agree (issue 18): every route the code registers is documented, every
/// documented route is registered, and every example decodes into its generated type.
@Suite struct OpenAPIDocumentTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every `router.<method>("<path>"` of the hand-written routes (the device protocol, health, metrics), as
    /// `(METHOD, /path/{}/…)`.
    static func handWrittenRoutes() throws -> Set<String> {
        let directory = root.appendingPathComponent("Sources/EcoWattServer/Routes")
        var routes = Set<String>()
        let pattern = try Regex(#"router\.(get|post|put|patch|delete)\("([^"]+)""#)
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for match in text.matches(of: pattern) {
                let method = String(match.output[1].substring!).uppercased()
                routes.insert("\(method) \(normalised(String(match.output[2].substring!)))")
            }
        }
        return routes
    }

    /// Parameters as `{}` (`:id` in Hummingbird, `{device_id}` in OpenAPI).
    static func normalised(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix(":") || segment.hasPrefix("{") ? "{}" : String(segment)
        }
        .joined(separator: "/")
    }

    static func documentedRoutes() throws -> [(method: String, path: String, tag: String)] {
        guard case .object(let paths)? = try JSONParser.parse(OpenAPIDocument.bytes)["paths"] else { return [] }
        return paths.flatMap { path, item -> [(method: String, path: String, tag: String)] in
            guard case .object(let operations) = item else { return [] }
            return operations.map { method, operation in
                (method.uppercased(), path, operation["tags"]?.arrayValue?.first?.stringValue ?? "")
            }
        }
    }

    @Test func everyHandWrittenRouteIsDocumentedAsTheDeviceProtocol() throws {
        let documented = try Self.documentedRoutes()
        let byRoute = Dictionary(documented.map { ("\($0.method) \(Self.normalised($0.path))", $0.tag) }) { first, _ in first }
        let routes = try Self.handWrittenRoutes()
        #expect(routes.count >= 18, "\(routes)")
        for route in routes {
            #expect(byRoute[route] == "device-protocol", "\(route) is registered but not documented as a device route")
        }
        // And the other way round: every documented device route is written by hand.
        for route in documented where route.tag == "device-protocol" {
            #expect(
                routes.contains("\(route.method) \(Self.normalised(route.path))"),
                "\(route.method) \(route.path) is documented but not registered"
            )
        }
        #expect(documented.allSatisfy { $0.tag == "device-protocol" || $0.path.hasPrefix("/api/v1/") }, "operator routes live under /api/v1")
    }

    /// Every documented route answers: not the router's 404 and not 405 (placeholders for path parameters).
    @Test func everyDocumentedRouteIsRegistered() async throws {
        let test = try await TestServer()
        try await test.run { client in
            for route in try Self.documentedRoutes() {
                // The event stream ends after max_seconds.
                let path = route.path.replacing(try Regex(#"\{[a-z_]+\}"#), with: "1") + (route.path == "/api/v1/events" ? "?max_seconds=1" : "")
                let response = try await client.execute(
                    uri: path,
                    method: HTTPRequest.Method(route.method)!,
                    headers: test.operatorHeaders,
                    body: ByteBuffer(string: "{}")
                )
                let code = response.headers[ErrorCode.header]
                #expect(code != "no_route" && code != "method_not_allowed", "\(route.method) \(route.path): \(response.status)")
                #expect(response.status != .internalServerError, "\(route.method) \(route.path)")
            }
        }
    }

    /// Each documented example decodes into the generated type of its schema (with the API's date format).
    @Test func everyDocumentedExampleDecodesIntoItsType() throws {
        typealias S = Components.Schemas
        let types: [String: any Decodable.Type] = [
            "Error": S._Error.self, "Device": S.Device.self, "DevicePage": S.DevicePage.self, "DeviceCreate": S.DeviceCreate.self,
            "Sample": S.Sample.self, "Command": S.Command.self, "CommandCreate": S.CommandCreate.self,
            "ConfigChangeRequest": S.ConfigChangeRequest.self, "DeploymentCreate": S.DeploymentCreate.self,
            "Deployment": S.Deployment.self, "NetworkFaultCreate": S.NetworkFaultCreate.self, "User": S.User.self,
            "UserCreate": S.UserCreate.self, "UserUpdate": S.UserUpdate.self, "LoginRequest": S.LoginRequest.self, "Me": S.Me.self,
            "TokenCreate": S.TokenCreate.self, "FleetSummary": S.FleetSummary.self, "RolloutCreate": S.RolloutCreate.self,
        ]
        guard case .object(let schemas)? = try JSONParser.parse(OpenAPIDocument.bytes)["components"]?["schemas"] else {
            Issue.record("no schemas")
            return
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in try MillisecondDates().decode(try decoder.singleValueContainer().decode(String.self)) }
        var decoded = 0
        for (name, schema) in schemas {
            guard let example = schema["example"] else { continue }
            let type = try #require(types[name], "an example of \(name) without a type to decode it into")
            #expect(throws: Never.self, "\(name)") { _ = try decoder.decode(type, from: Data(example.serializedBytes)) }
            decoded += 1
        }
        #expect(decoded == types.count, "every listed schema has an example")
    }
}
