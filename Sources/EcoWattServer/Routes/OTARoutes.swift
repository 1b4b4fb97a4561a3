import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Foundation
import Hummingbird
import MultipartKit

/// FOTA routes (spec §7): the device flow (status, check, initiate, chunk, progress, complete) and the operator's
/// firmware catalogue, deployments and sessions.
struct OTARoutes {
    let ota: OTAService
    let boot: BootMessages
    let access: DeviceAccess
    let maxFirmwareBytes: Int

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/ota/status", use: bootSelfTest)
        router.get("/ota/check/:id", use: check)
        router.post("/ota/initiate/:id", use: initiate)
        router.get("/ota/chunk/:id", use: chunk)
        router.post("/ota/:id/progress", use: progress)
        router.post("/ota/:id/complete", use: complete)
    }

    func registerOperatorRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.post("/ota/upload", use: upload)
        router.get("/ota/firmwares", use: firmwares)
        router.get("/ota/firmware/:version/manifest", use: manifest)
        router.delete("/ota/firmware/:version", use: deleteFirmware)
        router.post("/ota/deployments", use: deploy)
        router.get("/ota/deployments", use: deployments)
        router.delete("/ota/deployments/:id", use: cancelDeployment)
        router.get("/ota/status/:id", use: status)
        router.get("/ota/history/:id", use: history)
        router.get("/ota/stats", use: stats)
        router.post("/ota/cancel/:id", use: cancel)
    }

    // MARK: Device

    /// The firmware's boot self-test (spec §1.2): only the 200 matters; without it the device skips `POST /devices`
    /// and `POST /ota/{id}/complete`.
    @Sendable func bootSelfTest(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        JSONBody.response([
            "success": true,
            "status": .object([
                ("active_sessions", .int(Int64(ota.activeSessionCount))),
                ("ota_available", .bool(!ota.catalog.directory.versions().isEmpty)),
            ]),
        ])
    }

    /// `GET /ota/check/{id}?version=<running>` (spec §7.2; 2048-byte pool, JSON booleans).
    @Sendable func check(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        access.standing(deviceID, request, context)
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
        try access.requireBound(deviceID, request, context)
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
        try access.requireBound(deviceID, request, context)
        let query = request.uri.queryParameters
        guard let version = query["version"].map(String.init), FirmwareVersion.isValid(version) else {
            throw OTAError.invalid("version query parameter must be a URL-safe version string")
        }
        let reply = try ota.chunk(deviceID: deviceID, version: version, index: query["chunk"].map(String.init) ?? "")
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: reply))
    }

    /// `POST /ota/{id}/progress` (spec §7.5). A bound route: only the device's own reports move its session (and
    /// count its failed attempts).
    @Sendable func progress(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        try access.requireBound(deviceID, request, context)
        var request = request
        let body = try await request.jsonBody(limit: 4096)
        guard let phase = body["phase"]?.stringValue, OTAService.phases.contains(phase) else {
            throw OTAError.invalid("phase must be one of \(OTAService.phases.sorted().joined(separator: ", "))")
        }
        let progress = body["progress"]?.intValue.flatMap { Int(exactly: $0) }.map { min(max($0, 0), 100) }
        let session = try await ota.progress(
            deviceID: deviceID,
            phase: phase,
            progress: progress,
            message: body["message"]?.stringValue.map { String($0.prefix(256)) },
            deviceTime: DeviceTime.seconds(body["timestamp"]?.intValue, arrivalMs: ota.clock())
        )
        return JSONBody.response(["success": true, "session_id": session.map { .string($0.sessionID) } ?? .null])
    }

    /// `POST /ota/{id}/complete` (spec §7.6), sent on every boot: applied from the device's bound address, else held.
    @Sendable func complete(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        access.standing(deviceID, request, context)
        var request = request
        let body = try await request.jsonBody(limit: 4096)
        guard let version = body["version"]?.stringValue, Self.isPrintable(version, maximum: 64) else {
            throw OTAError.invalid("version (the running firmware version) is required")
        }
        guard let status = body["status"]?.stringValue, OTAService.completionStatuses.contains(status) else {
            throw OTAError.invalid("status must be one of \(OTAService.completionStatuses.sorted().joined(separator: ", "))")
        }
        let report = CompletionReport(version: version, status: status, error: body["error_msg"]?.stringValue.map { String($0.prefix(256)) })
        let applied = try await boot.completion(deviceID: deviceID, report: report, address: access.address(request, context), nowMs: ota.clock())
        guard let outcome = applied else {
            // From an address the device is not bound to: held until a verified upload from there confirms it.
            return JSONBody.response(status: .accepted, ["success": true, "device_id": .string(deviceID), "held": true])
        }
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "version": .string(version), "status": .string(status),
            "outcome": outcome.map { .string($0.rawValue) } ?? .null,
        ])
    }

    // MARK: Operator

    /// The fields of a `multipart/form-data` upload.
    struct UploadForm: Decodable {
        var file: Data?
        var version: String?
        var description: String?
    }

    /// `POST /ota/upload` (multipart `file`, `version`, `description`): prepares and stores the image.
    @Sendable func upload(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        guard let contentType = request.headers[.contentType].flatMap(MediaType.init(from:)),
            contentType.isType(.multipartForm), let boundary = contentType.parameter?.value, contentType.parameter?.name == "boundary"
        else {
            throw OTAError.invalid("Content-Type must be multipart/form-data with a boundary (fields file, version, description)")
        }
        var request = request
        let bytes = try await request.collectLimitedBody(limit: maxFirmwareBytes + 64 * 1024)
        let form: UploadForm
        do {
            form = try FormDataDecoder().decode(UploadForm.self, from: bytes, boundary: boundary)
        } catch {
            throw OTAError.invalid("Malformed multipart body: \(error)")
        }
        guard let file = form.file, !file.isEmpty else { throw OTAError.invalid("file is required") }
        guard file.count <= maxFirmwareBytes else {
            throw APIError(.contentTooLarge, "The image exceeds max_firmware_bytes (\(maxFirmwareBytes))")
        }
        guard let version = form.version, !version.isEmpty else { throw OTAError.invalid("version is required") }
        let servable: ServableFirmware
        do {
            servable = try await ota.upload(image: Array(file), version: version, description: form.description)
        } catch let error as FirmwareError {
            throw Self.apiError(error)
        }
        var warnings: [JSONValue] = []
        if servable.manifest.encryptedSize > FirmwareManifest.defaultPartitionBytes {
            warnings.append(
                .string(
                    "encrypted_size exceeds the default OTA partition (\(FirmwareManifest.defaultPartitionBytes) bytes): devices with the default partition table will not download it"
                )
            )
        }
        return JSONBody.response(
            status: .created,
            ["success": true, "manifest": servable.manifest.json, "warnings": .array(warnings)]
        )
    }

    static func apiError(_ error: FirmwareError) -> any Error {
        switch error {
        case .invalidVersion, .image: OTAError.invalid(error.description)
        case .versionExists: OTAError.conflict("\(error.description): versions are immutable, use a new one")
        case .notFound(let version): OTAError.noFirmware(version)
        case .keys(let reason): OTAError.keysUnavailable(reason)
        case .manifest, .io: APIError(.internalServerError, error.description)
        }
    }

    /// `GET /ota/firmwares`: every prepared version, oldest first, with the deployments that use it.
    @Sendable func firmwares(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let versions = ota.catalog.directory.versions()
        let deployments = try await ota.deployments(limit: 10_000).filter { $0.status == "active" }
        var items: [JSONValue] = []
        for version in versions {
            do {
                guard let firmware = try ota.catalog.firmware(version) else { continue }
                var members: [(String, JSONValue)] = []
                if case .object(let manifest) = firmware.manifest.json { members = manifest }
                members.append(("signature_verified", firmware.signatureVerified.map(JSONValue.bool) ?? .null))
                members.append(
                    ("active_deployments", .array(deployments.filter { $0.version == version }.map { .int($0.id) }))
                )
                items.append(.object(members))
            } catch {
                items.append(.object([("version", .string(version)), ("error", .string("\(error)"))]))
            }
        }
        return JSONBody.response(["success": true, "count": .int(Int64(items.count)), "firmwares": .array(items)])
    }

    /// `GET /ota/firmware/{version}/manifest`: the stored manifest bytes, as they are.
    @Sendable func manifest(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let version = try Self.version(context)
        guard let firmware = try ota.catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: firmware.firmware.manifestBytes))
        )
    }

    @Sendable func deleteFirmware(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let version = try Self.version(context)
        let removed: [String]
        do {
            removed = try await ota.deleteFirmware(version)
        } catch let error as FirmwareError {
            throw Self.apiError(error)
        }
        return JSONBody.response([
            "success": true, "version": .string(version),
            "removed": .array(removed.map { .string(($0 as NSString).lastPathComponent) }),
        ])
    }

    /// `POST /ota/deployments` `{"version":…, "devices":"all"|[ids], "max_attempts":5, "notes":…}`.
    @Sendable func deploy(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        var request = request
        let body = try await request.jsonBody()
        guard let version = body["version"]?.stringValue, FirmwareVersion.isValid(version) else {
            throw OTAError.invalid("version must be a prepared firmware version")
        }
        let deviceIDs: [String]?
        switch body["devices"] {
        case .string("all"), nil: deviceIDs = nil
        case .array(let items):
            let ids = items.compactMap(\.stringValue)
            guard ids.count == items.count, !ids.isEmpty, ids.count <= 100_000,
                ids.allSatisfy(EcoWattRequestContext.isValidDeviceID)
            else {
                throw OTAError.invalid("devices must be \"all\" or a non-empty list of device ids")
            }
            deviceIDs = ids
        default: throw OTAError.invalid("devices must be \"all\" or a non-empty list of device ids")
        }
        let maxAttempts = body["max_attempts"]?.intValue ?? 5
        guard (1...100).contains(maxAttempts) else { throw OTAError.invalid("max_attempts must be in 1...100") }
        let notes = body["notes"]?.stringValue
        if let notes, notes.utf8.count > 1024 { throw OTAError.invalid("notes must be at most 1024 bytes") }
        let deployment = try await ota.deploy(version: version, deviceIDs: deviceIDs, maxAttempts: Int(maxAttempts), notes: notes)
        return JSONBody.response(status: .created, ["success": true, "deployment": Self.json(deployment)])
    }

    @Sendable func deployments(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let limit = try request.limitParameter(default: 100, maximum: 10_000)
        let deployments = try await ota.deployments(limit: limit)
        return JSONBody.response([
            "success": true, "count": .int(Int64(deployments.count)), "deployments": .array(deployments.map(Self.json)),
        ])
    }

    @Sendable func cancelDeployment(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        guard let id = context.parameters.get("id").flatMap(Int64.init) else {
            throw OTAError.invalid("deployment id must be an integer")
        }
        guard let deployment = try await ota.cancelDeployment(id: id) else {
            throw OTAError.notFound("No deployment \(id)")
        }
        return JSONBody.response(["success": true, "deployment": Self.json(deployment)])
    }

    /// `GET /ota/status/{id}`: the device's latest session (live counters) and its progress events.
    @Sendable func status(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        guard let session = try await ota.sessions(deviceID: deviceID, limit: 1).first else {
            return JSONBody.response([
                "success": true, "device_id": .string(deviceID), "active": false, "session": .null, "events": .array([]),
            ])
        }
        let events = try await ota.events(sessionID: session.sessionID, limit: 1000)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "active": .bool(session.outcome == nil),
            "session": Self.json(session), "events": .array(events.map(Self.json)),
        ])
    }

    @Sendable func history(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let limit = try request.limitParameter(default: 50, maximum: 1000)
        let sessions = try await ota.sessions(deviceID: deviceID, limit: limit).map(Self.json)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "count": .int(Int64(sessions.count)), "sessions": .array(sessions),
        ])
    }

    @Sendable func stats(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let counts = try await ota.counts()
        let finished = OTAOutcome.allCases.reduce(0) { $0 + (counts.sessionsByOutcome[$1.rawValue] ?? 0) }
        let succeeded = counts.sessionsByOutcome[OTAOutcome.success.rawValue] ?? 0
        return JSONBody.response([
            "success": true,
            "sessions": .object(
                [("active", .int(Int64(counts.activeSessions)))]
                    + OTAOutcome.allCases.map { ($0.rawValue, .int(Int64(counts.sessionsByOutcome[$0.rawValue] ?? 0))) }
            ),
            "success_rate": .double(finished > 0 ? Double(succeeded) / Double(finished) : 0),
            "chunks_served": .int(counts.chunksServed), "bytes_served": .int(counts.bytesServed),
            "deployments": .object([("active", .int(Int64(counts.activeDeployments))), ("total", .int(Int64(counts.deployments)))]),
            "firmwares": .int(Int64(ota.catalog.directory.versions().count)),
            "keys_loaded": .bool(ota.keys != nil),
        ])
    }

    @Sendable func cancel(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let session = try await ota.cancel(deviceID: deviceID)
        return JSONBody.response(["success": true, "session": Self.json(session)])
    }

    // MARK: Helpers

    static func version(_ context: EcoWattRequestContext) throws -> String {
        guard let version = context.parameters.get("version"), FirmwareVersion.isValid(version) else {
            throw OTAError.invalid("Invalid firmware version in path")
        }
        return version
    }

    static func isPrintable(_ text: String, maximum: Int) -> Bool {
        !text.isEmpty && text.utf8.count <= maximum && text.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
    }

    static func json(_ deployment: OTADeployment) -> JSONValue {
        .object([
            ("id", .int(deployment.id)), ("version", .string(deployment.version)),
            ("devices", deployment.deviceIDs.map { .array($0.map(JSONValue.string)) } ?? .string("all")),
            ("status", .string(deployment.status)), ("max_attempts", .int(Int64(deployment.maxAttempts))),
            ("notes", deployment.notes.map(JSONValue.string) ?? .null),
            ("created_at", .string(QueryRoutes.iso(deployment.createdAtMs))),
            ("cancelled_at", deployment.cancelledAtMs.map { .string(QueryRoutes.iso($0)) } ?? .null),
        ])
    }

    static func json(_ session: OTASession) -> JSONValue {
        .object([
            ("session_id", .string(session.sessionID)), ("device_id", .string(session.deviceID)),
            ("version", .string(session.version)), ("from_version", session.fromVersion.map(JSONValue.string) ?? .null),
            ("deployment_id", session.deploymentID.map(JSONValue.int) ?? .null),
            ("phase", .string(session.phase)), ("progress", .int(Int64(session.progress))),
            ("total_chunks", .int(Int64(session.totalChunks))), ("chunks_served", .int(Int64(session.chunksServed))),
            ("bytes_served", .int(session.bytesServed)), ("last_chunk", session.lastChunk.map { .int(Int64($0)) } ?? .null),
            ("started_at", .string(QueryRoutes.iso(session.startedAtMs))),
            ("updated_at", .string(QueryRoutes.iso(session.updatedAtMs))),
            ("ended_at", session.endedAtMs.map { .string(QueryRoutes.iso($0)) } ?? .null),
            ("outcome", session.outcome.map { .string($0.rawValue) } ?? .null),
            ("message", session.message.map(JSONValue.string) ?? .null),
            ("reported_version", session.reportedVersion.map(JSONValue.string) ?? .null),
            ("reported_status", session.reportedStatus.map(JSONValue.string) ?? .null),
        ])
    }

    static func json(_ event: OTAEvent) -> JSONValue {
        .object([
            ("phase", .string(event.phase)), ("progress", event.progress.map { .int(Int64($0)) } ?? .null),
            ("message", event.message.map(JSONValue.string) ?? .null),
            ("device_timestamp", event.deviceTimeS.map(JSONValue.int) ?? .null),
            ("device_time_invalid", .bool(event.deviceTimeInvalid)),
            ("received_at", .string(QueryRoutes.iso(event.receivedAtMs))),
        ])
    }
}
