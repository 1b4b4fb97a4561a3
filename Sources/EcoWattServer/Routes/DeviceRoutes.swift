import EcoWattProtocol
import EcoWattStorage
import Foundation
import Hummingbird

/// Device registry (spec §1.2 B, §1.3): boot registration from the device, CRUD for operators.
struct DeviceRoutes {
    let devices: DeviceService
    let boot: BootMessages
    let access: DeviceAccess
    let clock: @Sendable () -> Int64

    static let maxFieldLength = 128
    /// Largest registration body: the firmware's is under 200 bytes (spec §1.2 B).
    static let maxDeviceBodyBytes = 4096

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.post("/devices", use: registerDevice)
    }

    func registerOperatorRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/devices", use: list)
        router.get("/devices/:id", use: show)
        router.put("/devices/:id", use: update)
        router.delete("/devices/:id", use: delete)
    }

    /// `POST /devices`: 201 for a new device, 200 for a known one, and a boot signal. From an address the device is
    /// not bound to (a first boot, a new address), 202: held until a verified upload from that address confirms it.
    @Sendable func registerDevice(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        var request = request
        let body = try await request.jsonBody(limit: Self.maxDeviceBodyBytes)
        guard let deviceID = body["device_id"]?.stringValue, EcoWattRequestContext.isValidDeviceID(deviceID) else {
            throw APIError(.badRequest, "device_id must be 1-128 printable ASCII characters")
        }
        let fields = try Self.fields(body, allowFirmware: true)
        let now = clock()
        access.standing(deviceID, request, context)
        guard let created = try await boot.registration(deviceID: deviceID, fields: fields, address: access.address(request, context), nowMs: now)
        else {
            return JSONBody.response(status: .accepted, ["success": true, "device_id": .string(deviceID), "held": true])
        }
        return JSONBody.response(
            status: created ? .created : .ok,
            ["success": true, "device_id": .string(deviceID), "registered": .bool(created)]
        )
    }

    @Sendable func list(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let limit = try request.limitParameter(default: 1000, maximum: 10_000)
        let listings = try await devices.devices(limit: limit)
        return JSONBody.response([
            "success": true, "devices": .array(listings.map(Self.render)), "count": .int(Int64(listings.count)),
        ])
    }

    @Sendable func show(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        return JSONBody.response(["success": true, "device": Self.render(try await devices.device(deviceID))])
    }

    @Sendable func update(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        var request = request
        let fields = try Self.fields(try await request.jsonBody(), allowFirmware: false)
        return JSONBody.response(["success": true, "device": Self.render(try await devices.update(deviceID, fields: fields))])
    }

    @Sendable func delete(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        try await devices.delete(deviceID)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID),
            "message": .string("Device, its nonce and decoder state and its pending commands were removed; telemetry is kept"),
        ])
    }

    static func render(_ listing: DeviceService.Listing) -> JSONValue {
        let device = listing.row
        return .object([
            ("device_id", .string(device.deviceID)), ("device_name", device.deviceName.map(JSONValue.string) ?? .null),
            ("location", device.location.map(JSONValue.string) ?? .null),
            ("description", device.description.map(JSONValue.string) ?? .null),
            ("firmware_version", device.firmwareVersion.map(JSONValue.string) ?? .null),
            ("status", .string(listing.online ? "online" : "offline")),
            ("registered_at", device.registeredAtMs.map { .string(QueryRoutes.iso($0)) } ?? .null),
            ("first_seen", .string(QueryRoutes.iso(device.firstSeenMs))), ("last_seen", .string(QueryRoutes.iso(listing.lastSeenMs))),
            ("upload_count", .int(Int64(device.uploadCount))), ("admission", .string(device.admission)),
            ("bound_address", device.boundAddress.map(JSONValue.string) ?? .null),
            ("bound_at", device.boundAtMs.map { .string(QueryRoutes.iso($0)) } ?? .null),
            ("nonce_jumps_refused", .int(Int64(device.nonceJumpsRefused))),
            ("last_refused_nonce", device.lastRefusedNonce.map(JSONValue.int) ?? .null),
        ])
    }

    static func fields(_ body: JSONValue, allowFirmware: Bool) throws -> DeviceFields {
        guard body.isObject else { throw APIError(.badRequest, "Body must be a JSON object") }
        func field(_ name: String) throws -> String? {
            guard let value = body[name], value != .null else { return nil }
            guard let text = value.stringValue, text.count <= maxFieldLength else {
                throw APIError(.badRequest, "\(name) must be a string of at most \(maxFieldLength) characters")
            }
            return text
        }
        return DeviceFields(
            deviceName: try field("device_name"),
            location: try field("location"),
            description: try field("description"),
            firmwareVersion: try field("firmware_version")
        )
    }
}

extension EcoWattRequestContext {
    /// 1–128 printable ASCII characters without `/` or `\`.
    static func isValidDeviceID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= maxDeviceIDLength
            && id.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && $0 != "/" && $0 != "\\" }
    }
}
