import EcoWattAPI
import EcoWattProtocol
import HTTPTypes

/// The paths of the OpenAPI document (device routes, monitoring and the operator API) with their methods: which
/// methods a path allows, for 405 answers, and what the route-agreement test compares with the router.
public struct RouteTable: Sendable {
    /// Path templates split into segments (`{x}` matches any one segment) with their methods.
    public let routes: [(segments: [String], methods: [HTTPRequest.Method])]

    /// The routes of the served document.
    public static let documented = RouteTable(document: OpenAPIDocument.bytes)

    init(document: [UInt8]) {
        guard case .object(let members)? = try? JSONParser.parse(document), case .object(let paths)? = members.first(where: { $0.0 == "paths" })?.1
        else {
            routes = []
            return
        }
        routes = paths.map { path, item in
            let methods: [HTTPRequest.Method] =
                if case .object(let operations) = item {
                    operations.compactMap { HTTPRequest.Method($0.0.uppercased()) }.filter { $0 != .head && $0 != .options }
                } else { [] }
            return (Self.segments(path), methods)
        }
    }

    static func segments(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
    }

    /// The methods allowed for `path` (empty when no documented route matches it).
    public func methods(forPath path: String) -> [HTTPRequest.Method] {
        let segments = Self.segments(path)
        var methods: [HTTPRequest.Method] = []
        for route in routes where route.segments.count == segments.count {
            let matches = zip(route.segments, segments).allSatisfy { template, segment in
                template.hasPrefix("{") ? !segment.isEmpty : template == segment
            }
            if matches { methods += route.methods.filter { !methods.contains($0) } }
        }
        return methods
    }
}
