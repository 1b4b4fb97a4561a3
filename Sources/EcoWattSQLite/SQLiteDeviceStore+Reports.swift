import EcoWattStorage
import GRDB

extension SQLiteDeviceStore: ReportStore {
    public func addPowerReport(_ report: PowerReport) async throws {
        let retention = retention
        try await admittingWrite(report.deviceID, nowMs: report.receivedAtMs) { db, pending in
            try db.cachedStatement(
                sql: """
                    INSERT INTO power_reports (device_id, device_time_ms, received_at_ms, enabled, techniques, avg_current_ma,
                      energy_saved_mah, peripheral_savings_mah, uptime_ms, high_perf_ms, normal_ms, low_power_ms, sleep_ms,
                      device_time_invalid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    report.deviceID, report.deviceTimeMs, report.receivedAtMs, report.enabled, report.techniques,
                    report.avgCurrentMA, report.energySavedMAh, report.peripheralSavingsMAh, report.uptimeMs,
                    report.highPerfMs, report.normalMs, report.lowPowerMs, report.sleepMs, report.deviceTimeInvalid,
                ]
            )
            try Retention.added(db, .powerReports, deviceID: report.deviceID, pending: pending, policy: retention)
        }
    }

    public func powerReports(deviceID: String, sinceMs: Int64, before: Int64?, limit: Int) async throws -> [PowerReport] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT * FROM power_reports WHERE device_id = ? AND received_at_ms >= ? AND id < ? ORDER BY id DESC LIMIT ?
                        """
                ),
                arguments: [deviceID, sinceMs, before ?? Int64.max, limit]
            ).map { row in
                var report = PowerReport(deviceID: row["device_id"], receivedAtMs: row["received_at_ms"])
                report.id = row["id"]
                report.deviceTimeMs = row["device_time_ms"]
                report.enabled = row["enabled"]
                report.techniques = row["techniques"]
                report.avgCurrentMA = row["avg_current_ma"]
                report.energySavedMAh = row["energy_saved_mah"]
                report.peripheralSavingsMAh = row["peripheral_savings_mah"]
                report.uptimeMs = row["uptime_ms"]
                report.highPerfMs = row["high_perf_ms"]
                report.normalMs = row["normal_ms"]
                report.lowPowerMs = row["low_power_ms"]
                report.sleepMs = row["sleep_ms"]
                report.deviceTimeInvalid = row["device_time_invalid"]
                return report
            }
        }
    }

    public func addFaultEvent(_ event: FaultEvent) async throws -> Int64 {
        let retention = retention
        return try await admittingWrite(event.deviceID, nowMs: event.receivedAtMs) { db, pending in
            try db.cachedStatement(
                sql: """
                    INSERT INTO fault_events (device_id, device_time_s, received_at_ms, fault_type, recovery_action, success,
                      details, retry_count, device_time_invalid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    event.deviceID, event.deviceTimeS, event.receivedAtMs, event.faultType, event.recoveryAction,
                    event.success, event.details, event.retryCount, event.deviceTimeInvalid,
                ]
            )
            let id = db.lastInsertedRowID
            try Retention.added(db, .faultEvents, deviceID: event.deviceID, pending: pending, policy: retention)
            return id
        }
    }

    public func faultEvents(deviceID: String, before: Int64?, limit: Int) async throws -> (events: [FaultEvent], total: Int, successful: Int) {
        try await database.pool.read { db in
            let events = try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT * FROM fault_events WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
                ),
                arguments: [deviceID, before ?? Int64.max, limit]
            ).map { row in
                var event = FaultEvent(
                    deviceID: row["device_id"],
                    deviceTimeS: row["device_time_s"],
                    receivedAtMs: row["received_at_ms"],
                    faultType: row["fault_type"],
                    recoveryAction: row["recovery_action"],
                    success: row["success"],
                    details: row["details"],
                    retryCount: row["retry_count"]
                )
                event.id = row["id"]
                event.deviceTimeInvalid = row["device_time_invalid"]
                return event
            }
            let counts = try Row.fetchOne(
                db.cachedStatement(
                    sql: "SELECT COUNT(*) AS total, COALESCE(SUM(success), 0) AS ok FROM fault_events WHERE device_id = ?"
                ),
                arguments: [deviceID]
            )
            return (events, counts?["total"] ?? 0, counts?["ok"] ?? 0)
        }
    }
}
