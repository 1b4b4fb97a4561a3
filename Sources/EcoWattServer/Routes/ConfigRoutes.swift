import EcoWattProtocol
import EcoWattStorage
import Hummingbird

/// Remote configuration (spec §5): the device polls, acknowledges and reports its running configuration at boot;
/// operators submit validated updates and read the history.
struct ConfigRoutes {
    let config: ConfigService
    let boot: BootMessages
    let access: DeviceAccess
    let clock: @Sendable () -> Int64

    /// Largest boot report or acknowledgement: the firmware's are about 400 bytes (spec §5.3, §5.4).
    static let maxDeviceBodyBytes = 4096

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/config/:id", use: poll)
        router.post("/config/:id/acknowledge", use: acknowledge)
        router.post("/config/:id/current", use: bootReport)
    }

    /// `GET /config/{id}`: `{"is_pending":false}` or `{"is_pending":true,"pending_config":{"config_update":{…}}}`.
    /// A bound route: a pending configuration is delivered only to the device's bound address; a device with no
    /// verified upload yet gets `is_pending:false`.
    @Sendable func poll(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        switch await access.standing(deviceID, request, context) {
        case .bound: break
        case .unbound: return JSONBody.response(["is_pending": false])
        case .elsewhere: throw BindingError.elsewhere(deviceID)
        }
        guard let pending = try await config.deliver(deviceID: deviceID) else {
            return JSONBody.response(["is_pending": false])
        }
        return JSONBody.response(["is_pending": true, "pending_config": .object([("config_update", pending)])])
    }

    /// `POST /config/{id}/acknowledge`: the device applied the pending configuration it was delivered (a bound route).
    @Sendable func acknowledge(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        try await access.requireBound(deviceID, request, context)
        var request = request
        let body = try await request.jsonBody(limit: Self.maxDeviceBodyBytes)
        guard body.isObject else { throw APIError(.badRequest, "Acknowledgement must be a JSON object") }
        try await config.acknowledge(deviceID: deviceID, ack: body)
        return JSONBody.response(["success": true, "device_id": .string(deviceID), "status": "applied"])
    }

    /// `POST /config/{id}/current`: the boot report, stored as the running configuration, and a boot signal. From an
    /// address the device is not bound to, 202: held until a verified upload from that address confirms it.
    @Sendable func bootReport(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let address = access.address(request, context)
        let standing = await access.standing(deviceID, address: address)
        var request = request
        let body = try await request.jsonBody(limit: Self.maxDeviceBodyBytes)
        guard body.isObject else { throw APIError(.badRequest, "Boot report must be a JSON object") }
        let applied = try await boot.bootReport(deviceID: deviceID, report: body, address: address, standing: standing, nowMs: clock())
        return JSONBody.response(
            status: applied ? .ok : .accepted,
            applied ? ["success": true, "device_id": .string(deviceID)] : ["success": true, "device_id": .string(deviceID), "held": true]
        )
    }

}
