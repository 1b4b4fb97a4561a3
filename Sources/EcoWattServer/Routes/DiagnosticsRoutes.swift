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

    func registerOperatorRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/diagnostics", use: all)
        router.get("/diagnostics/summary", use: summary)
        router.get("/diagnostics/:id", use: list)
        router.delete("/diagnostics/:id", use: delete)
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
        try ReportRoutes.refuseElsewhere(deviceID, access.standing(deviceID, request, context))
        try await devices.admit(deviceID)
        try await diagnostics.append(deviceID: deviceID, object: body, receivedAt: QueryRoutes.iso(clock()))
        return JSONBody.response(status: .created, ["success": true, "message": "Diagnostics stored"])
    }

    @Sendable func all(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let limit = try request.limitParameter(default: 10, maximum: 1000)
        let devices = diagnostics.devices.prefix(1000)
        return JSONBody.response([
            "success": true,
            "diagnostics": .object(devices.map { ($0, .array(diagnostics.entries(deviceID: $0, limit: limit))) }),
        ])
    }

    @Sendable func list(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try Self.deviceID(context)
        let limit = try request.limitParameter(default: 10, maximum: 10_000)
        let entries = diagnostics.entries(deviceID: deviceID, limit: limit)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "count": .int(Int64(entries.count)), "diagnostics": .array(entries),
        ])
    }

    @Sendable func summary(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let devices = diagnostics.devices
        return JSONBody.response([
            "success": true, "device_count": .int(Int64(devices.count)),
            "devices": .array(
                devices.prefix(1000).map { deviceID in
                    let summary = diagnostics.summary(deviceID: deviceID)
                    return .object([
                        ("device_id", .string(deviceID)), ("entries", .int(Int64(summary.entries))),
                        ("files", .int(Int64(summary.files))), ("bytes", .int(Int64(summary.bytes))),
                        ("last_received_at", summary.lastReceivedAt.map(JSONValue.string) ?? .null),
                    ])
                }
            ),
        ])
    }

    @Sendable func delete(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try Self.deviceID(context)
        let removed = await diagnostics.delete(deviceID: deviceID)
        guard removed > 0 else { throw APIError(.notFound, "No diagnostics for \(deviceID)") }
        return JSONBody.response(["success": true, "device_id": .string(deviceID), "files_removed": .int(Int64(removed))])
    }
}
