import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import Foundation
import OpenAPIRuntime

// Command queues and remote configuration.
extension OperatorAPI {
    func listDeviceCommands(_ input: Operations.ListDeviceCommands.Input) async throws -> Operations.ListDeviceCommands.Output {
        let query = input.query
        return .ok(.init(body: .json(try await commandPage(input.path.deviceId, query.status, query.cursor, query.limit))))
    }

    /// Every device's commands (the dashboard's Commands page).
    func listCommands(_ input: Operations.ListCommands.Input) async throws -> Operations.ListCommands.Output {
        .ok(.init(body: .json(try await commandPage(nil, input.query.status, input.query.cursor, input.query.limit))))
    }

    private func commandPage(
        _ deviceID: String?,
        _ status: Schemas.CommandStatus?,
        _ cursor: String?,
        _ limit: Int?
    ) async throws
        -> Schemas.CommandPage
    {
        let limit = try Self.limit(limit, default: 100, maximum: 1000)
        let rows = try await commands.commands(
            deviceID: deviceID,
            status: status.flatMap { CommandStatus(rawValue: $0.rawValue) },
            before: try PageCursor.integer(cursor),
            limit: limit
        )
        let next = rows.count == limit ? rows.last.map { PageCursor.encode($0.sequence) } : nil
        return .init(items: rows.map(Schemas.Command.init), nextCursor: next)
    }

    /// 201 for a new command, 200 with the existing one for a repeated idempotency key.
    func queueCommand(_ input: Operations.QueueCommand.Input) async throws -> Operations.QueueCommand.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let id = try Self.deviceID(input.path.deviceId)
        try await devices.requireKnown(id, create: body.create ?? false)
        // The firmware-era validation of CommandRequest, fed the typed body.
        var command: [(String, JSONValue)] = [("action", .string(body.action.rawValue))]
        if let register = body.targetRegister { command.append(("target_register", .string(register))) }
        if let value = body.value { command.append(("value", .int(Int64(value)))) }
        var json: [(String, JSONValue)] = [("command", .object(command))]
        if let ttl = body.ttlSeconds { json.append(("ttl_seconds", .int(Int64(ttl)))) }
        if let expires = body.expiresAt { json.append(("expires_at", .double(Double(MillisecondDates.milliseconds(expires)) / 1000))) }
        if let key = body.idempotencyKey { json.append(("idempotency_key", .string(key))) }
        let request: CommandRequest
        do {
            request = try CommandRequest(json: .object(json), nowMs: clock())
        } catch {
            throw APIError(.unprocessableContent, error.reason, code: "invalid")
        }
        let (row, created) = try await commands.queue(request, deviceID: id)
        return created ? .created(.init(body: .json(.init(row)))) : .ok(.init(body: .json(.init(row))))
    }

    func getCommand(_ input: Operations.GetCommand.Input) async throws -> Operations.GetCommand.Output {
        guard let row = try await commands.command(input.path.commandId) else { throw CommandStoreError.notFound(input.path.commandId) }
        return .ok(.init(body: .json(.init(row))))
    }

    func cancelCommand(_ input: Operations.CancelCommand.Input) async throws -> Operations.CancelCommand.Output {
        .ok(.init(body: .json(.init(try await commands.cancel(input.path.commandId)))))
    }

    func getCommandStats(_ input: Operations.GetCommandStats.Input) async throws -> Operations.GetCommandStats.Output {
        .ok(.init(body: .json(Self.commandStats(try await commands.counts()))))
    }

    static func commandStats(_ counts: [CommandStatus: Int]) -> Schemas.CommandStats {
        let finished = (counts[.completed] ?? 0) + (counts[.failed] ?? 0) + (counts[.timedOut] ?? 0)
        return Schemas.CommandStats(
            total: Int64(counts.values.reduce(0, +)),
            byStatus: .init(Dictionary(uniqueKeysWithValues: CommandStatus.allCases.map { ($0.rawValue, counts[$0] ?? 0) })),
            successRate: finished > 0 ? Double(counts[.completed] ?? 0) / Double(finished) : 0
        )
    }

    // MARK: Configuration

    func getDeviceConfig(_ input: Operations.GetDeviceConfig.Input) async throws -> Operations.GetDeviceConfig.Output {
        let id = input.path.deviceId
        let state = try await config.state(deviceID: id)
        return .ok(
            .init(
                body: .json(
                    .init(
                        deviceId: id,
                        running: .init(state.running),
                        pending: Schemas.JSONObject(state.pending),
                        pendingCreatedAt: date(state.pendingCreatedAtMs),
                        pendingDeliveredAt: date(state.pendingDeliveredAtMs)
                    )
                )
            )
        )
    }

    /// Accepted fields go to the pending change; 422 when none is accepted (`details.rejected` says why).
    func setDeviceConfig(_ input: Operations.SetDeviceConfig.Input) async throws -> Operations.SetDeviceConfig.Output {
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let id = try Self.deviceID(input.path.deviceId)
        try await devices.requireKnown(id, create: body.create ?? false)
        let (update, state) = try await config.request(deviceID: id, update: body.configUpdate.json)
        let rejected = Dictionary(update.rejected) { first, _ in first }
        if update.accepted.isEmpty && !rejected.isEmpty {
            var refused = APIError(.unprocessableContent, "No field of config_update was accepted", code: "invalid")
            refused.details = [("rejected", .object(update.rejected.map { ($0.0, .string($0.1)) }))]
            throw refused
        }
        let change = Schemas.ConfigChange(
            deviceId: id,
            accepted: .init(.object(update.accepted)),
            rejected: .init(additionalProperties: rejected),
            unchanged: update.unchanged,
            pending: Schemas.JSONObject(state.pending),
            running: .init(state.running)
        )
        return .ok(.init(body: .json(change)))
    }

    func withdrawDeviceConfig(_ input: Operations.WithdrawDeviceConfig.Input) async throws -> Operations.WithdrawDeviceConfig.Output {
        try await config.withdraw(deviceID: input.path.deviceId)
        return .noContent(.init())
    }

    func listDeviceConfigHistory(_ input: Operations.ListDeviceConfigHistory.Input) async throws -> Operations.ListDeviceConfigHistory.Output {
        let limit = try Self.limit(input.query.limit, default: 20, maximum: 1000)
        let rows = try await config.events(deviceID: input.path.deviceId, before: try PageCursor.integer(input.query.cursor), limit: limit)
        let next = rows.count == limit ? rows.last.map { PageCursor.encode($0.id) } : nil
        return .ok(.init(body: .json(.init(items: rows.map(Schemas.ConfigEvent.init), nextCursor: next))))
    }
}
