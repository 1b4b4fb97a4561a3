import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Foundation
import Hummingbird

/// FOTA routes (spec §7): the device flow (status, check, initiate, chunk, progress, complete) and the operator's
/// firmware catalogue, deployments and sessions.
struct OTARoutes {
    let ota: OTAService
    let boot: BootMessages
    let access: DeviceAccess

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/ota/status", use: bootSelfTest)
        router.get("/ota/check/:id", use: check)
        router.post("/ota/initiate/:id", use: initiate)
        router.get("/ota/chunk/:id", use: chunk)
        router.post("/ota/:id/progress", use: progress)
        router.post("/ota/:id/complete", use: complete)
    }

    // MARK: Device

    /// The firmware's boot self-test (spec §1.2): only the 200 matters; without it the device skips `POST /devices`
    /// and `POST /ota/{id}/complete`.
    @Sendable func bootSelfTest(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        JSONBody.response([
            "success": true,
            "status": .object([
                ("active_sessions", .int(Int64(ota.activeSessionCount))),
                ("ota_available", .bool(!(try await ota.catalog.versions().isEmpty))),
            ]),
        ])
    }

    /// `GET /ota/check/{id}?version=<running>` (spec §7.2; 2048-byte pool, JSON booleans).
    @Sendable func check(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        await access.standing(deviceID, request, context)
        guard let running = request.uri.queryParameters["version"].map(String.init), Self.isPrintable(running, maximum: 64)
        else {
            throw OTAError.invalid("version query parameter (the running firmware version) is required")
        }
        let (offer, reason) = try await ota.check(deviceID: deviceID, runningVersion: running)
        guard let offer else {
            return JSONBody.response([
                "success": true, "update_available": false, "current_version": .string(running), "message": .string(reason),
            ])
        }
        return JSONBody.response([
            "success": true, "update_available": true, "current_version": .string(running),
            "update_info": ota.updateInfo(offer, deviceID: deviceID),
        ])
    }

    /// `POST /ota/initiate/{id}` `{"firmware_version":…}` (spec §7.5; 512-byte pool). A bound route.
    @Sendable func initiate(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        try await access.requireBound(deviceID, request, context)
        var request = request
        let body = try await request.jsonBody(limit: 4096)
        guard let version = body["firmware_version"]?.stringValue, FirmwareVersion.isValid(version) else {
            throw OTAError.invalid("firmware_version must be a URL-safe version string")
        }
        let (session, _) = try await ota.initiate(deviceID: deviceID, version: version)
        return JSONBody.response([
            "success": true, "session_id": .string(session.sessionID), "firmware_version": .string(version),
            "total_chunks": .int(Int64(session.totalChunks)),
        ])
    }

    /// `GET /ota/chunk/{id}?version=&chunk=` (spec §7.3): the pre-serialized reply of that chunk. A bound route.
    @Sendable func chunk(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        try await access.requireBound(deviceID, request, context)
        let query = request.uri.queryParameters
        guard let version = query["version"].map(String.init), FirmwareVersion.isValid(version) else {
            throw OTAError.invalid("version query parameter must be a URL-safe version string")
        }
        let reply = try await ota.chunkFromAnyInstance(deviceID: deviceID, version: version, index: query["chunk"].map(String.init) ?? "")
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: reply))
    }

    /// `POST /ota/{id}/progress` (spec §7.5). A bound route: only the device's own reports move its session (and
    /// count its failed attempts).
    @Sendable func progress(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        try await access.requireBound(deviceID, request, context)
        var request = request
        let body = try await request.jsonBody(limit: 4096)
        guard let phase = body["phase"]?.stringValue, OTAService.phases.contains(phase) else {
            throw OTAError.invalid("phase must be one of \(OTAService.phases.sorted().joined(separator: ", "))")
        }
        let progress = body["progress"]?.intValue.flatMap { Int(exactly: $0) }.map { min(max($0, 0), 100) }
        let sessionID = try await ota.progress(
            deviceID: deviceID,
            phase: phase,
            progress: progress,
            message: body["message"]?.stringValue.map { String($0.prefix(256)) },
            deviceTime: DeviceTime.seconds(body["timestamp"]?.intValue, arrivalMs: ota.clock())
        )
        return JSONBody.response(["success": true, "session_id": sessionID.map { .string($0) } ?? .null])
    }

    /// `POST /ota/{id}/complete` (spec §7.6), sent on every boot: applied from the device's bound address, else held.
    @Sendable func complete(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let address = access.address(request, context)
        let standing = await access.standing(deviceID, address: address)
        var request = request
        let body = try await request.jsonBody(limit: 4096)
        guard let version = body["version"]?.stringValue, Self.isPrintable(version, maximum: 64) else {
            throw OTAError.invalid("version (the running firmware version) is required")
        }
        guard let status = body["status"]?.stringValue, OTAService.completionStatuses.contains(status) else {
            throw OTAError.invalid("status must be one of \(OTAService.completionStatuses.sorted().joined(separator: ", "))")
        }
        let report = CompletionReport(version: version, status: status, error: body["error_msg"]?.stringValue.map { String($0.prefix(256)) })
        let applied = try await boot.completion(deviceID: deviceID, report: report, address: address, standing: standing, nowMs: ota.clock())
        guard let outcome = applied else {
            // From an address the device is not bound to: held until a verified upload from there confirms it.
            return JSONBody.response(status: .accepted, ["success": true, "device_id": .string(deviceID), "held": true])
        }
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "version": .string(version), "status": .string(status),
            "outcome": outcome.map { .string($0.rawValue) } ?? .null,
        ])
    }

    // MARK: Helpers

    static func isPrintable(_ text: String, maximum: Int) -> Bool {
        !text.isEmpty && text.utf8.count <= maximum && text.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
    }
}
