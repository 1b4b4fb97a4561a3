import EcoWattProtocol
import EcoWattStorage
import Logging
import PostgresNIO

/// ``ReportStore`` and ``BindingStore`` on PostgreSQL: device reports and held messages, bounded like every table
/// device requests add to (``PostgresRetention``).
extension PostgresDeviceStore: ReportStore, BindingStore {
    public func addPowerReport(_ report: PowerReport) async throws {
        let retention = retention
        try await admittingWrite(report.deviceID, nowMs: report.receivedAtMs) { connection, logger, pending in
            try await connection.execute(
                """
                INSERT INTO power_reports (device_id, device_time_ms, received_at_ms, enabled, techniques, avg_current_ma,
                  energy_saved_mah, peripheral_savings_mah, uptime_ms, high_perf_ms, normal_ms, low_power_ms, sleep_ms,
                  device_time_invalid)
                VALUES (\(report.deviceID), \(report.deviceTimeMs), \(report.receivedAtMs), \(report.enabled), \(report.techniques),
                  \(report.avgCurrentMA), \(report.energySavedMAh), \(report.peripheralSavingsMAh), \(report.uptimeMs),
                  \(report.highPerfMs), \(report.normalMs), \(report.lowPowerMs), \(report.sleepMs), \(report.deviceTimeInvalid))
                """,
                logger: logger
            )
            try await PostgresRetention.added(connection, logger, .powerReports, deviceID: report.deviceID, pending: pending, policy: retention)
        }
    }

    public func powerReports(deviceID: String, sinceMs: Int64, before: Int64?, limit: Int) async throws -> [PowerReport] {
        try await database.rows(
            """
            SELECT * FROM power_reports WHERE device_id = \(deviceID) AND received_at_ms >= \(sinceMs) AND id < \(before ?? .max)
            ORDER BY id DESC LIMIT \(max(0, limit))
            """
        ).map { row in
            var report = PowerReport(deviceID: try row.value("device_id"), receivedAtMs: try row.value("received_at_ms"))
            report.id = try row.value("id")
            report.deviceTimeMs = try row.value("device_time_ms")
            report.enabled = try row.value("enabled")
            report.techniques = try row.value("techniques")
            report.avgCurrentMA = try row.value("avg_current_ma")
            report.energySavedMAh = try row.value("energy_saved_mah")
            report.peripheralSavingsMAh = try row.value("peripheral_savings_mah")
            report.uptimeMs = try row.value("uptime_ms")
            report.highPerfMs = try row.value("high_perf_ms")
            report.normalMs = try row.value("normal_ms")
            report.lowPowerMs = try row.value("low_power_ms")
            report.sleepMs = try row.value("sleep_ms")
            report.deviceTimeInvalid = try row.value("device_time_invalid")
            return report
        }
    }

    public func addFaultEvent(_ event: FaultEvent) async throws -> Int64 {
        let retention = retention
        return try await admittingWrite(event.deviceID, nowMs: event.receivedAtMs) { connection, logger, pending in
            let id =
                try await connection.rows(
                    """
                    INSERT INTO fault_events (device_id, device_time_s, received_at_ms, fault_type, recovery_action, success,
                      details, retry_count, device_time_invalid)
                    VALUES (\(event.deviceID), \(event.deviceTimeS), \(event.receivedAtMs), \(event.faultType), \(event.recoveryAction),
                      \(event.success), \(event.details), \(event.retryCount), \(event.deviceTimeInvalid)) RETURNING id
                    """,
                    logger: logger
                ).first?.value("id", as: Int64.self) ?? 0
            try await PostgresRetention.added(connection, logger, .faultEvents, deviceID: event.deviceID, pending: pending, policy: retention)
            return id
        }
    }

    public func faultEvents(deviceID: String, before: Int64?, limit: Int) async throws -> (events: [FaultEvent], total: Int, successful: Int) {
        let events = try await database.rows(
            "SELECT * FROM fault_events WHERE device_id = \(deviceID) AND id < \(before ?? .max) ORDER BY id DESC LIMIT \(max(0, limit))"
        ).map { row in
            var event = FaultEvent(
                deviceID: try row.value("device_id"),
                deviceTimeS: try row.value("device_time_s"),
                receivedAtMs: try row.value("received_at_ms"),
                faultType: try row.value("fault_type"),
                recoveryAction: try row.value("recovery_action"),
                success: try row.value("success"),
                details: try row.value("details"),
                retryCount: try row.value("retry_count")
            )
            event.id = try row.value("id")
            event.deviceTimeInvalid = try row.value("device_time_invalid")
            return event
        }
        let counts = try await database.rows(
            "SELECT count(*) AS total, count(*) FILTER (WHERE success) AS ok FROM fault_events WHERE device_id = \(deviceID)"
        ).first
        return (events, try counts?.value("total") ?? 0, try counts?.value("ok") ?? 0)
    }

    // MARK: Bindings and held messages

    public func bindings() async throws -> [String: DeviceBindingRecord] {
        var bindings: [String: DeviceBindingRecord] = [:]
        let rows = try await database.client.query(
            "SELECT device_id, bound_address, bound_at_ms FROM devices WHERE bound_address IS NOT NULL"
        )
        for try await (device, address, at) in rows.decode((String, String, Int64?).self) {
            bindings[device] = DeviceBindingRecord(address: address, atMs: at ?? 0)
        }
        return bindings
    }

    public func heldMessages() async throws -> [HeldMessage] {
        try await database.rows("SELECT * FROM held_messages ORDER BY id").compactMap(Self.heldMessage)
    }

    public func heldMessages(deviceID: String) async throws -> [HeldMessage] {
        try await database.rows("SELECT * FROM held_messages WHERE device_id = \(deviceID) ORDER BY id").compactMap(Self.heldMessage)
    }

    static func heldMessage(_ row: PostgresRandomAccessRow) throws -> HeldMessage? {
        guard let kind = HeldMessageKind(rawValue: try row.value("kind")), let body = JSONValue(storedText: try row.value("body"))
        else { return nil }
        return HeldMessage(
            id: try row.value("id"),
            deviceID: try row.value("device_id"),
            address: try row.value("address"),
            kind: kind,
            body: body,
            receivedAtMs: try row.value("received_at_ms")
        )
    }

    public func hold(_ message: HeldMessage) async throws -> HeldMessage {
        let retention = retention
        return try await writer.write { connection, logger in
            let replaced = try await connection.rows(
                """
                DELETE FROM held_messages WHERE device_id = \(message.deviceID) AND address = \(message.address)
                  AND kind = \(message.kind.rawValue) RETURNING 1
                """,
                logger: logger
            ).count
            try await PostgresRetention.removed(connection, logger, .heldMessages, count: replaced, dropped: false)
            var stored = message
            stored.id =
                try await connection.rows(
                    """
                    INSERT INTO held_messages (device_id, address, kind, body, received_at_ms)
                    VALUES (\(message.deviceID), \(message.address), \(message.kind.rawValue), \(message.body.serialized),
                      \(message.receivedAtMs)) RETURNING id
                    """,
                    logger: logger
                ).first?.value("id") ?? 0
            try await PostgresRetention.added(connection, logger, .heldMessages, deviceID: message.deviceID, pending: false, policy: retention)
            return stored
        }
    }

    public func deleteHeld(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await writer.write { connection, logger in
            let count = try await connection.rows("DELETE FROM held_messages WHERE id = ANY(\(ids)) RETURNING 1", logger: logger).count
            try await PostgresRetention.removed(connection, logger, .heldMessages, count: count, dropped: false)
        }
    }
}
