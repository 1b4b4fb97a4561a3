import EcoWattProtocol
import EcoWattStorage
import HTTPTypes
import Hummingbird

/// Command routes (spec §4): the device polls and reports; operators queue, inspect and cancel.
struct CommandRoutes {
    let commands: CommandService
    let access: DeviceAccess
    let clock: @Sendable () -> Int64

    func registerDeviceRoutes(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/commands/:id/poll", use: poll)
        router.post("/commands/:id/result", use: result)
    }

    /// `GET /commands/{id}/poll`: at most one command, compact (the device parses it into a 512-byte pool). A bound
    /// route: a command is dispatched only to the device's bound address; a device with no verified upload yet gets
    /// none.
    @Sendable func poll(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let address = access.address(request, context)
        switch await access.standing(deviceID, address: address) {
        case .bound: break
        case .unbound: return JSONBody.response(["commands": .array([]), "count": 0])
        case .elsewhere: throw BindingError.elsewhere(deviceID)
        }
        guard let command = try await commands.poll(deviceID: deviceID, address: address) else {
            return JSONBody.response(["commands": .array([]), "count": 0])
        }
        return JSONBody.response(["commands": .array([Self.devicePayload(command)]), "count": 1])
    }

    /// The one command as the firmware reads it: string `command_id`, integer `value` and `register_address`.
    static func devicePayload(_ command: CommandRow) -> JSONValue {
        var fields: [(String, JSONValue)] = [("action", .string(command.action))]
        if let target = command.targetRegister { fields.append(("target_register", .string(target))) }
        if let address = command.registerAddress { fields.append(("register_address", .int(Int64(address)))) }
        if let value = command.value { fields.append(("value", .int(Int64(value)))) }
        return .object([("command_id", .string(command.commandID)), ("command", .object(fields))])
    }

    /// `POST /commands/{id}/result`: the firmware shape or the original one. Accepted only for a command dispatched to
    /// this device, from the address it was dispatched to.
    @Sendable func result(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let address = try await access.requireBound(deviceID, request, context)
        var request = request
        let report: CommandResultReport
        do {
            report = try CommandResultReport(json: try await request.jsonBody())
        } catch let error as CommandValidationError {
            throw APIError(.badRequest, error.reason)
        }
        let command = try await commands.result(report, deviceID: deviceID, address: address)
        return JSONBody.response([
            "success": true, "command_id": .string(command.commandID), "status": .string(command.status.rawValue),
        ])
    }
}
