import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import PostgresNIO

/// ``CommandStore`` on PostgreSQL.
extension PostgresDeviceStore {
    public func queue(_ command: CommandRequest, deviceID: String, nowMs: Int64, maxPending: Int) async throws -> (command: CommandRow, created: Bool)
    {
        let commandID = UUID().uuidString.lowercased()
        return try await writer.write { connection, logger in
            // Adopting the device locks its row: the cap below holds across instances.
            try await PostgresRetention.adopt(connection, logger, deviceID: deviceID, nowMs: nowMs)
            if let key = command.idempotencyKey,
                let existing = try await connection.rows(
                    "SELECT * FROM commands WHERE device_id = \(deviceID) AND idempotency_key = \(key)",
                    logger: logger
                ).first
            {
                return (try CommandRow(existing), false)
            }
            let pending =
                try await connection.rows(
                    "SELECT count(*) AS n FROM commands WHERE device_id = \(deviceID) AND status = 'pending'",
                    logger: logger
                ).first?.value("n", as: Int.self) ?? 0
            guard pending < maxPending else { throw CommandStoreError.queueFull(deviceID: deviceID, limit: maxPending) }
            let row = try await connection.rows(
                """
                INSERT INTO commands (command_id, device_id, action, target_register, register_address, value, status,
                  idempotency_key, created_at_ms, expires_at_ms)
                VALUES (\(commandID), \(deviceID), \(command.action), \(command.targetRegister), \(command.registerAddress),
                  \(command.value), 'pending', \(command.idempotencyKey), \(nowMs), \(command.expiresAtMs))
                RETURNING *
                """,
                logger: logger
            )
            return (try CommandRow(row[0]), true)
        }
    }

    public func dispatchNext(deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow? {
        try await writer.write { connection, logger in
            try await connection.execute(
                """
                UPDATE commands SET status = 'expired', finished_at_ms = \(nowMs)
                WHERE device_id = \(deviceID) AND status = 'pending' AND expires_at_ms IS NOT NULL AND expires_at_ms <= \(nowMs)
                """,
                logger: logger
            )
            // The oldest pending command no other poll holds: two instances polling at once never take the same one.
            return try await connection.rows(
                """
                UPDATE commands SET status = 'dispatched', dispatched_at_ms = \(nowMs), dispatched_to = \(address)
                WHERE id = (SELECT id FROM commands WHERE device_id = \(deviceID) AND status = 'pending' ORDER BY id LIMIT 1
                  FOR UPDATE SKIP LOCKED)
                RETURNING *
                """,
                logger: logger
            ).first.map(CommandRow.init)
        }
    }

    public func devicesWithPendingCommands() async throws -> [String] {
        try await database.rows("SELECT DISTINCT device_id FROM commands WHERE status = 'pending'").map { try $0.value("device_id") }
    }

    public func recordResult(_ result: CommandResult, deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow {
        try await writer.write { connection, logger in
            guard
                let row = try await connection.rows(
                    "SELECT * FROM commands WHERE command_id = \(result.commandID) AND device_id = \(deviceID) FOR UPDATE",
                    logger: logger
                ).first
            else { throw CommandStoreError.notFound(result.commandID) }
            let command = try CommandRow(row)
            // A late result after a timeout is still the truth about what the device did.
            guard [.dispatched, .timedOut].contains(command.status) else {
                throw CommandStoreError.wrongState(commandID: command.commandID, status: command.status)
            }
            // A result must come from where the command went (a result from elsewhere was not the device's).
            guard (try row.value("dispatched_to", as: String?.self)).map({ $0 == address }) ?? true else {
                throw CommandStoreError.notFound(result.commandID)
            }
            let status: CommandStatus = result.succeeded ? .completed : .failed
            let updated = try await connection.rows(
                """
                UPDATE commands SET status = \(status.rawValue), finished_at_ms = \(nowMs),
                  result_status = \(result.succeeded ? "success" : "failed"), executed_at = \(result.executedAt),
                  result_json = \(result.resultJSON), error_msg = \(result.errorMessage)
                WHERE command_id = \(command.commandID) RETURNING *
                """,
                logger: logger
            )
            return try CommandRow(updated[0])
        }
    }

    public func command(_ commandID: String) async throws -> CommandRow? {
        try await database.rows("SELECT * FROM commands WHERE command_id = \(commandID)").first.map(CommandRow.init)
    }

    public func commands(deviceID: String?, status: CommandStatus?, before: Int64?, limit: Int) async throws -> [CommandRow] {
        try await database.rows(
            """
            SELECT * FROM commands WHERE (\(deviceID)::text IS NULL OR device_id = \(deviceID))
              AND (\(status?.rawValue)::text IS NULL OR status = \(status?.rawValue)) AND id < \(before ?? .max)
            ORDER BY id DESC LIMIT \(max(0, limit))
            """
        ).map(CommandRow.init)
    }

    public func cancelCommand(_ commandID: String, nowMs: Int64) async throws -> CommandRow {
        try await writer.write { connection, logger in
            guard let row = try await connection.rows("SELECT * FROM commands WHERE command_id = \(commandID) FOR UPDATE", logger: logger).first
            else { throw CommandStoreError.notFound(commandID) }
            let command = try CommandRow(row)
            guard command.status == .pending else { throw CommandStoreError.wrongState(commandID: commandID, status: command.status) }
            let updated = try await connection.rows(
                "UPDATE commands SET status = 'cancelled', finished_at_ms = \(nowMs) WHERE command_id = \(commandID) RETURNING *",
                logger: logger
            )
            return try CommandRow(updated[0])
        }
    }

    public func sweepCommands(nowMs: Int64, resultTimeoutMs: Int64) async throws -> (timedOut: [String], expired: [String]) {
        // Read first (through the status indexes): an idle fleet costs no write transaction every sweep.
        let due =
            try await database.rows(
                """
                SELECT EXISTS (SELECT 1 FROM commands WHERE status = 'dispatched' AND dispatched_at_ms <= \(nowMs - resultTimeoutMs))
                  OR EXISTS (SELECT 1 FROM commands WHERE status = 'pending' AND expires_at_ms <= \(nowMs)) AS due
                """
            ).first?.value("due", as: Bool.self) ?? false
        guard due else { return ([], []) }
        return try await writer.write { connection, logger in
            let timedOut = try await connection.rows(
                """
                UPDATE commands SET status = 'timed_out', finished_at_ms = \(nowMs)
                WHERE status = 'dispatched' AND dispatched_at_ms <= \(nowMs - resultTimeoutMs) RETURNING device_id
                """,
                logger: logger
            ).map { try $0.value("device_id", as: String.self) }
            let expired = try await connection.rows(
                """
                UPDATE commands SET status = 'expired', finished_at_ms = \(nowMs)
                WHERE status = 'pending' AND expires_at_ms IS NOT NULL AND expires_at_ms <= \(nowMs) RETURNING device_id
                """,
                logger: logger
            ).map { try $0.value("device_id", as: String.self) }
            return (timedOut, expired)
        }
    }

    public func commandCounts() async throws -> [CommandStatus: Int] {
        var counts = [CommandStatus: Int]()
        for row in try await database.rows("SELECT status, count(*) AS n FROM commands GROUP BY status") {
            if let status = CommandStatus(rawValue: try row.value("status")) { counts[status] = try row.value("n") }
        }
        return counts
    }
}

extension CommandRow {
    init(_ row: PostgresRandomAccessRow) throws {
        self.init(
            commandID: try row.value("command_id"),
            deviceID: try row.value("device_id"),
            action: try row.value("action"),
            targetRegister: try row.value("target_register"),
            registerAddress: try row.value("register_address"),
            value: try row.value("value"),
            status: CommandStatus(rawValue: try row.value("status")) ?? .pending,
            idempotencyKey: try row.value("idempotency_key"),
            createdAtMs: try row.value("created_at_ms"),
            expiresAtMs: try row.value("expires_at_ms"),
            dispatchedAtMs: try row.value("dispatched_at_ms"),
            finishedAtMs: try row.value("finished_at_ms"),
            resultStatus: try row.value("result_status"),
            executedAt: try row.value("executed_at"),
            resultJSON: try row.value("result_json"),
            errorMessage: try row.value("error_msg")
        )
        sequence = try row.value("id")
    }
}
