import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import HTTPTypes

/// The role × route matrix (issue 19), declared in the OpenAPI document: every operator operation carries
/// `x-ecowatt-role` (`public`, `viewer`, `operator` or `admin`) and, when its body holds secrets,
/// `x-ecowatt-audit-body: redact`. One source for the middleware, the document's readers and the matrix test.
public struct AccessPolicy: Sendable {
    public struct Rule: Sendable, Equatable {
        public var operationID: String
        /// `nil`: public (no credentials needed).
        public var role: Role?
        /// The audit trail records no digest of the body (it carries a password).
        public var redactBody: Bool
    }

    /// Rules by method and path template (`GET /api/v1/devices/{device_id}`).
    public let rules: [String: Rule]

    public static let documented = AccessPolicy(document: OpenAPIDocument.bytes)

    init(document: [UInt8]) {
        var rules: [String: Rule] = [:]
        if let root = try? JSONParser.parse(document), case .object(let paths)? = root["paths"] {
            for (path, item) in paths {
                guard case .object(let operations) = item else { continue }
                for (method, operation) in operations {
                    guard let roleName = operation["x-ecowatt-role"]?.stringValue else { continue }
                    let role = Role(rawValue: roleName)
                    guard role != nil || roleName == "public" else { continue }
                    rules["\(method.uppercased()) \(path)"] = Rule(
                        operationID: operation["operationId"]?.stringValue ?? "\(method) \(path)",
                        role: role,
                        redactBody: operation["x-ecowatt-audit-body"]?.stringValue == "redact"
                    )
                }
            }
        }
        self.rules = rules
    }

    public func rule(method: HTTPRequest.Method, path: String) -> Rule? {
        rules["\(method.rawValue) \(path)"]
    }
}
