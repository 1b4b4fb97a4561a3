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
        let address = access.address(request, context)
        let standing = await access.standing(deviceID, address: address)
        guard let created = try await boot.registration(deviceID: deviceID, fields: fields, address: address, standing: standing, nowMs: now)
        else {
            return JSONBody.response(status: .accepted, ["success": true, "device_id": .string(deviceID), "held": true])
        }
        return JSONBody.response(
            status: created ? .created : .ok,
            ["success": true, "device_id": .string(deviceID), "registered": .bool(created)]
        )
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
