import EcoWattProtocol
import EcoWattStorage
import Hummingbird

/// Diagnostics JSONL (spec §1.3, §9.3). The firmware sends none (spec §6.3); tools and test rigs post them.
struct DiagnosticsRoutes {
    let diagnostics: DiagnosticsService
    /// Diagnostics of an unknown id make it a pending device (bounded; dropped with its files when the set is full).
    let devices: DeviceService
    let access: DeviceAccess
    let clock: @Sendable () -> Int64

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.post("/diagnostics/:id", use: add)
    }

    /// The `{id}` segment, safe as part of a file name: 1-64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
    static func deviceID(_ context: EcoWattRequestContext) throws -> String {
        guard let id = context.parameters.get("id"), SafeIdentifier.isValid(id) else {
            throw APIError(.badRequest, "Invalid device id for diagnostics: 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . or -)")
        }
        return id
    }

    @Sendable func add(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try Self.deviceID(context)
        var request = request
        let body = try await request.jsonBody(limit: DiagnosticsService.maxBodyBytes)
        guard body.isObject else { throw APIError(.badRequest, "The body must be a JSON object") }
        try ReportRoutes.refuseElsewhere(deviceID, await access.standing(deviceID, request, context))
        try await devices.admit(deviceID)
        do {
            try await diagnostics.append(deviceID: deviceID, object: body, receivedAt: EpochTime.iso8601(milliseconds: clock()))
        } catch DiagnosticsStoreError.unwritable(let reason) {
            throw APIError(.serviceUnavailable, "Diagnostics could not be stored: \(reason)")
        }
        return JSONBody.response(status: .created, ["success": true, "message": "Diagnostics stored"])
    }

}
