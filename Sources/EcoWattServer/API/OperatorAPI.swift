import EcoWattAPI
import EcoWattProtocol
import Foundation
import Hummingbird
import MQTTBridge
import OpenAPIHummingbird
import OpenAPIRuntime

/// The operator API v1 (issue 18): the handlers of the operations generated from `openapi.json`. Each decodes its typed
/// input, calls one service and returns the typed output; errors are thrown and answered by ``JSONErrorMiddleware`` in
/// the API's error shape.
struct OperatorAPI: APIProtocol {
    let devices: DeviceService
    let telemetry: TelemetryQueries
    let commands: CommandService
    let config: ConfigService
    let reports: ReportService
    let diagnostics: DiagnosticsService
    let ota: OTAService
    let ingest: IngestService
    let feed: MQTTPublisher
    let faults: FaultInjector
    let accounts: AccountService
    let credentials: DeviceCredentialService
    let eventLog: DeviceEventLog
    let vitals: DeviceVitals
    let system: SystemFacts
    let rollouts: RolloutService
    /// `keys/operator_token` (removed when an admin revokes it).
    let bootstrapTokenPath: String
    let maxFirmwareBytes: Int
    let clock: @Sendable () -> Int64

    /// Registers the operations on `router` (under `/api/v1`, as the document's paths say).
    func register(on router: RouterGroup<EcoWattRequestContext>) throws {
        try registerHandlers(
            on: router,
            serverURL: URL(string: "/")!,
            configuration: .ecoWatt,
            middlewares: [RequestBodyCheck(maxJSONBytes: Self.maxJSONBytes)]
        )
    }

    /// Largest JSON body (a deployment to 100 000 devices is about 2 MB).
    static let maxJSONBytes = 4 << 20

    // MARK: Helpers

    /// `limit` within `1...maximum`, `defaultValue` when absent.
    static func limit(_ value: Int?, default defaultValue: Int, maximum: Int) throws -> Int {
        guard let value else { return defaultValue }
        guard (1...maximum).contains(value) else { throw APIError(.badRequest, "limit must be in 1...\(maximum)", code: "invalid") }
        return value
    }

    /// A device id from a path: 1-128 printable ASCII characters without `/` or `\`.
    static func deviceID(_ id: String) throws -> String {
        guard EcoWattRequestContext.isValidDeviceID(id) else {
            throw APIError(.badRequest, "device_id must be 1-128 printable ASCII characters", code: "invalid")
        }
        return id
    }
}

/// The `cursor` of a list: opaque to clients (base64url of the position's fields).
enum PageCursor {
    static func encode(_ fields: [String]) -> String {
        Data(fields.joined(separator: "\u{1F}").utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func encode(_ value: Int64) -> String { encode([String(value)]) }

    /// The fields of `cursor`, `count` of them, or a 400.
    static func decode(_ cursor: String?, count: Int) throws -> [String]? {
        guard let cursor else { return nil }
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard cursor.utf8.count <= 1024, let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8) else {
            throw invalid
        }
        let fields = text.split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == count else { throw invalid }
        return fields
    }

    /// A cursor holding one integer.
    static func integer(_ cursor: String?) throws -> Int64? {
        guard let fields = try decode(cursor, count: 1) else { return nil }
        guard let value = Int64(fields[0]) else { throw invalid }
        return value
    }

    static var invalid: APIError { APIError(.badRequest, "cursor is not one this server gave out", code: "invalid_cursor") }
}
