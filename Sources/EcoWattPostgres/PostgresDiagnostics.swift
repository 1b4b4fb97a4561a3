import EcoWattStorage
import Logging
import PostgresNIO

/// ``DiagnosticsStore`` on PostgreSQL (issue 22): one row per JSONL line, so every instance reads what any instance
/// stored. The budgets of the files hold here too, counted in `diagnostics_devices` and `diagnostics_usage` so that an
/// append costs no scan: past a device's `maxFileBytes` × (`retainedFiles` + 1) its oldest entries go until a file's
/// worth is free (as a rotation frees one file), and past `totalBytes` the oldest entries of all devices go until a
/// tenth of the budget is free.
public struct PostgresDiagnostics: DiagnosticsStore {
    public let database: EcoWattPostgresDatabase
    public let limits: DiagnosticsLimits

    public init(database: EcoWattPostgresDatabase, limits: DiagnosticsLimits) {
        self.database = database
        self.limits = limits
    }

    public func appendDiagnostics(deviceID: String, line: [UInt8], receivedAt: String) async throws {
        let limits = limits
        let logger = database.logger
        let bytes = Int64(line.count)
        try await database.transaction { connection in
            // Every diagnostics write takes the usage row first: one lock order, so appends, trims across devices and
            // deletions of all instances never deadlock (diagnostics are rare; they queue here one at a time).
            let total =
                try await connection.rows(
                    "UPDATE diagnostics_usage SET bytes = bytes + \(bytes) WHERE id = 1 RETURNING bytes",
                    logger: logger
                ).first?.value("bytes", as: Int64.self) ?? 0
            let id =
                try await connection.rows(
                    """
                    INSERT INTO diagnostics (device_id, line, received_at)
                    VALUES (\(deviceID), \(ByteBuffer(bytes: line)), \(receivedAt)) RETURNING id
                    """,
                    logger: logger
                ).first?.value("id", as: Int64.self) ?? 0
            let deviceBytes =
                try await connection.rows(
                    """
                    INSERT INTO diagnostics_devices (device_id, entries, bytes) VALUES (\(deviceID), 1, \(bytes))
                    ON CONFLICT (device_id) DO UPDATE SET entries = diagnostics_devices.entries + 1,
                      bytes = diagnostics_devices.bytes + excluded.bytes
                    RETURNING bytes
                    """,
                    logger: logger
                ).first?.value("bytes", as: Int64.self) ?? 0
            var freed: Int64 = 0
            if deviceBytes > Int64(limits.perDeviceBytes) {
                // Older entries down to the retained files' worth, as a rotation leaves them.
                let older = deviceBytes - bytes
                let excess = older - Int64(limits.maxFileBytes * limits.retainedFiles)
                if excess > 0 {
                    freed = try await Self.dropOldest(connection, logger, deviceID: deviceID, keeping: id, bytes: excess)
                }
            }
            if total - freed > Int64(limits.totalBytes) {
                let target = total - freed - Int64(limits.totalBytes - limits.totalBytes / 10)
                freed += try await Self.dropOldest(connection, logger, deviceID: nil, keeping: id, bytes: target)
            }
            if freed > 0 {
                try await connection.execute("UPDATE diagnostics_usage SET bytes = bytes - \(freed) WHERE id = 1", logger: logger)
            }
        }
    }

    /// Deletes the oldest entries (of `deviceID`, or of every device) until at least `bytes` are free, never the entry
    /// `keeping`; updates the per-device totals and counts dropped entries when across devices. Returns the bytes freed.
    static func dropOldest(
        _ connection: PostgresConnection,
        _ logger: Logger,
        deviceID: String?,
        keeping: Int64,
        bytes: Int64
    ) async throws -> Int64 {
        // The first id whose running size frees enough (the window runs in id order and stops there); none: all.
        let scope: PostgresQuery =
            deviceID.map {
                """
                SELECT id FROM (SELECT id, sum(octet_length(line)) OVER (ORDER BY id) AS running FROM diagnostics
                  WHERE device_id = \($0) AND id <> \(keeping)) r WHERE running >= \(bytes) ORDER BY id LIMIT 1
                """
            }
                ?? """
                SELECT id FROM (SELECT id, sum(octet_length(line)) OVER (ORDER BY id) AS running FROM diagnostics
                  WHERE id <> \(keeping)) r WHERE running >= \(bytes) ORDER BY id LIMIT 1
                """
        let cut = try await connection.rows(scope, logger: logger).first?.value("id", as: Int64.self) ?? .max
        let condition: PostgresQuery =
            deviceID.map {
                "DELETE FROM diagnostics WHERE device_id = \($0) AND id <= \(cut) AND id <> \(keeping) RETURNING device_id, octet_length(line)::bigint"
            }
            ?? "DELETE FROM diagnostics WHERE id <= \(cut) AND id <> \(keeping) RETURNING device_id, octet_length(line)::bigint"
        var perDevice: [String: (entries: Int64, bytes: Int64)] = [:]
        for try await (device, size) in try await connection.query(condition, logger: logger).decode((String, Int64).self) {
            perDevice[device, default: (0, 0)].entries += 1
            perDevice[device, default: (0, 0)].bytes += size
        }
        var freed: Int64 = 0
        var entries: Int64 = 0
        for (device, removed) in perDevice {
            freed += removed.bytes
            entries += removed.entries
            try await connection.execute(
                """
                UPDATE diagnostics_devices SET entries = entries - \(removed.entries), bytes = bytes - \(removed.bytes)
                WHERE device_id = \(device)
                """,
                logger: logger
            )
            try await connection.execute("DELETE FROM diagnostics_devices WHERE device_id = \(device) AND entries <= 0", logger: logger)
        }
        if deviceID == nil {
            try await connection.execute("UPDATE diagnostics_usage SET dropped = dropped + \(entries) WHERE id = 1", logger: logger)
        }
        return freed
    }

    public func diagnostics(deviceID: String, limit: Int) async throws -> [[UInt8]] {
        try await database.rows(
            "SELECT line FROM diagnostics WHERE device_id = \(deviceID) ORDER BY id DESC LIMIT \(max(0, limit))"
        ).map { row in
            var line = Array(buffer: try row.value("line", as: ByteBuffer.self))
            if line.last == UInt8(ascii: "\n") { line.removeLast() }
            return line
        }
    }

    public func diagnosticsSummary(deviceID: String) async throws -> DiagnosticsSummary {
        let rows = try await database.rows(
            """
            SELECT d.entries, d.bytes,
              (SELECT received_at FROM diagnostics WHERE device_id = d.device_id ORDER BY id DESC LIMIT 1) AS last
            FROM diagnostics_devices d WHERE d.device_id = \(deviceID)
            """
        )
        guard let row = rows.first else { return DiagnosticsSummary() }
        let entries: Int64 = try row.value("entries")
        return DiagnosticsSummary(
            files: entries > 0 ? 1 : 0,
            bytes: Int(try row.value("bytes", as: Int64.self)),
            entries: Int(entries),
            lastReceivedAt: try row.value("last", as: String?.self)
        )
    }

    public func diagnosticsDevices() async throws -> [String] {
        try await database.rows("SELECT device_id FROM diagnostics_devices WHERE entries > 0 ORDER BY device_id").map { try $0.value("device_id") }
    }

    public func deleteDiagnostics(deviceID: String) async throws -> Int {
        // Evictions of pending ids (anonymous floods) name devices that never posted any: a read, not the usage lock.
        guard !(try await database.rows("SELECT 1 FROM diagnostics_devices WHERE device_id = \(deviceID)").isEmpty) else { return 0 }
        let logger = database.logger
        return try await database.transaction { connection in
            try await connection.execute("SELECT 1 FROM diagnostics_usage WHERE id = 1 FOR UPDATE", logger: logger)
            guard
                let removed = try await connection.rows(
                    "DELETE FROM diagnostics_devices WHERE device_id = \(deviceID) RETURNING bytes",
                    logger: logger
                ).first
            else { return 0 }
            try await connection.execute("DELETE FROM diagnostics WHERE device_id = \(deviceID)", logger: logger)
            try await connection.execute(
                "UPDATE diagnostics_usage SET bytes = bytes - \(try removed.value("bytes", as: Int64.self)) WHERE id = 1",
                logger: logger
            )
            return 1
        }
    }

    public func diagnosticsUsage() async throws -> DiagnosticsUsage {
        let row = try await database.rows("SELECT bytes, dropped FROM diagnostics_usage WHERE id = 1").first
        return DiagnosticsUsage(
            bytes: Int(try row?.value("bytes", as: Int64.self) ?? 0),
            dropped: Int(try row?.value("dropped", as: Int64.self) ?? 0)
        )
    }
}
