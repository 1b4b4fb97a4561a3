import EcoWattProtocol
import Foundation

extension InMemoryStore: CommandStore {
    public func queue(
        _ command: CommandRequest,
        deviceID: String,
        nowMs: Int64,
        maxPending: Int
    ) async throws -> (command: CommandRow, created: Bool) {
        try state.withLock { state in
            state.registry.adopt(deviceID, nowMs: nowMs)
            if let key = command.idempotencyKey,
                let existing = state.registry.commands.first(where: { $0.deviceID == deviceID && $0.idempotencyKey == key })
            {
                return (existing, false)
            }
            let pending = state.registry.commands.count { $0.deviceID == deviceID && $0.status == .pending }
            guard pending < maxPending else { throw CommandStoreError.queueFull(deviceID: deviceID, limit: maxPending) }
            var row = CommandRow(
                commandID: UUID().uuidString.lowercased(),
                deviceID: deviceID,
                action: command.action,
                targetRegister: command.targetRegister,
                registerAddress: command.registerAddress,
                value: command.value,
                status: .pending,
                idempotencyKey: command.idempotencyKey,
                createdAtMs: nowMs,
                expiresAtMs: command.expiresAtMs,
                dispatchedAtMs: nil,
                finishedAtMs: nil,
                resultStatus: nil,
                executedAt: nil,
                resultJSON: nil,
                errorMessage: nil
            )
            row.sequence = state.registry.takeID()
            state.registry.commands.append(row)
            return (row, true)
        }
    }

    public func dispatchNext(deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow? {
        state.withLock { state in
            state.registry.expireCommands(nowMs: nowMs) { $0.deviceID == deviceID }
            guard let index = state.registry.commands.firstIndex(where: { $0.deviceID == deviceID && $0.status == .pending }) else {
                return nil
            }
            state.registry.commands[index].status = .dispatched
            state.registry.commands[index].dispatchedAtMs = nowMs
            state.registry.dispatchedTo[state.registry.commands[index].commandID] = address
            return state.registry.commands[index]
        }
    }

    public func devicesWithPendingCommands() async throws -> [String] {
        state.withLock { Array(Set($0.registry.commands.filter { $0.status == .pending }.map(\.deviceID))) }
    }

    public func recordResult(_ result: CommandResult, deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow {
        try state.withLock { state in
            guard
                let index = state.registry.commands.firstIndex(where: { $0.commandID == result.commandID && $0.deviceID == deviceID })
            else { throw CommandStoreError.notFound(result.commandID) }
            let command = state.registry.commands[index]
            // A late result after a timeout is still the truth about what the device did.
            guard [.dispatched, .timedOut].contains(command.status) else {
                throw CommandStoreError.wrongState(commandID: command.commandID, status: command.status)
            }
            // A result must come from where the command went.
            guard state.registry.dispatchedTo[command.commandID].map({ $0 == address }) ?? true else {
                throw CommandStoreError.notFound(result.commandID)
            }
            state.registry.commands[index].status = result.succeeded ? .completed : .failed
            state.registry.commands[index].finishedAtMs = nowMs
            state.registry.commands[index].resultStatus = result.succeeded ? "success" : "failed"
            state.registry.commands[index].executedAt = result.executedAt
            state.registry.commands[index].resultJSON = result.resultJSON
            state.registry.commands[index].errorMessage = result.errorMessage
            return state.registry.commands[index]
        }
    }

    public func command(_ commandID: String) async throws -> CommandRow? {
        state.withLock { $0.registry.commands.first { $0.commandID == commandID } }
    }

    public func commands(deviceID: String?, status: CommandStatus?, before: Int64?, limit: Int) async throws -> [CommandRow] {
        state.withLock { state in
            Array(
                state.registry.commands.reversed().filter { command in
                    (deviceID.map { command.deviceID == $0 } ?? true) && command.sequence < before ?? .max
                        && (status.map { command.status == $0 } ?? true)
                }
                .prefix(max(0, limit))
            )
        }
    }

    public func cancelCommand(_ commandID: String, nowMs: Int64) async throws -> CommandRow {
        try state.withLock { state in
            guard let index = state.registry.commands.firstIndex(where: { $0.commandID == commandID }) else {
                throw CommandStoreError.notFound(commandID)
            }
            let status = state.registry.commands[index].status
            guard status == .pending else { throw CommandStoreError.wrongState(commandID: commandID, status: status) }
            state.registry.commands[index].status = .cancelled
            state.registry.commands[index].finishedAtMs = nowMs
            return state.registry.commands[index]
        }
    }

    public func sweepCommands(nowMs: Int64, resultTimeoutMs: Int64) async throws -> (timedOut: [String], expired: [String]) {
        state.withLock { state in
            var timedOut: [String] = []
            var expired: [String] = []
            for index in state.registry.commands.indices {
                let command = state.registry.commands[index]
                if command.status == .dispatched, (command.dispatchedAtMs ?? .max) <= nowMs - resultTimeoutMs {
                    state.registry.commands[index].status = .timedOut
                    state.registry.commands[index].finishedAtMs = nowMs
                    timedOut.append(command.deviceID)
                } else if command.status == .pending, let expiry = command.expiresAtMs, expiry <= nowMs {
                    expired.append(command.deviceID)
                }
            }
            state.registry.expireCommands(nowMs: nowMs) { _ in true }
            return (timedOut, expired)
        }
    }

    public func commandCounts() async throws -> [CommandStatus: Int] {
        state.withLock { state in state.registry.commands.reduce(into: [:]) { $0[$1.status, default: 0] += 1 } }
    }
}

extension RegistryTables {
    /// Marks pending commands (of the devices `which` selects) past their expiry as expired; returns how many.
    @discardableResult
    mutating func expireCommands(nowMs: Int64, which: (CommandRow) -> Bool) -> Int {
        var expired = 0
        for index in commands.indices where commands[index].status == .pending && which(commands[index]) {
            guard let expiry = commands[index].expiresAtMs, expiry <= nowMs else { continue }
            commands[index].status = .expired
            commands[index].finishedAtMs = nowMs
            expired += 1
        }
        return expired
    }
}
