import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import PostgresNIO

/// ``DeviceRegistryStore`` and ``CommandStore`` on PostgreSQL (issue 22), for several instances: a command is taken
/// by one poll (`FOR UPDATE SKIP LOCKED`), so two instances polling for one device at once never dispatch it twice,
/// and queueing locks the device's row, so the pending cap holds across instances.
public struct PostgresDeviceStore: DeviceRegistryStore, CommandStore {
    public let database: EcoWattPostgresDatabase
    public let writer: PostgresWriter
    public let retention: RetentionPolicy
    /// Told (after the commit) which ids got a registry row and which pending devices the caps dropped.
    public let events: RegistryEvents

    public init(
        database: EcoWattPostgresDatabase,
        writer: PostgresWriter,
        retention: RetentionPolicy = RetentionPolicy(),
        events: RegistryEvents = RegistryEvents()
    ) {
        self.database = database
        self.writer = writer
        self.retention = retention
        self.events = events
    }

    /// Runs `body` in the next group transaction after admitting `deviceID`; `body` learns whether the device is
    /// pending. Evictions are reported once the transaction committed.
    func admittingWrite<T: Sendable>(
        _ deviceID: String,
        nowMs: Int64,
        _ body: @escaping @Sendable (PostgresConnection, Logger, _ pending: Bool) async throws -> T
    ) async throws -> T {
        let retention = retention
        let (value, created, evicted) = try await writer.write { connection, logger in
            let admission = try await PostgresRetention.admit(connection, logger, deviceID: deviceID, nowMs: nowMs, policy: retention)
            return (try await body(connection, logger, admission.pending), admission.created, admission.evicted)
        }
        if !evicted.isEmpty { events.report(.evicted(evicted)) }
        if created { events.report(.admitted([deviceID])) }
        return value
    }

    // MARK: Registry

    public func admit(deviceID: String, nowMs: Int64) async throws -> Bool {
        try await admittingWrite(deviceID, nowMs: nowMs) { _, _, pending in pending }
    }

    public func knownDevices() async throws -> [String: Int64] {
        var devices = [String: Int64]()
        for try await (id, seen) in try await database.client.query("SELECT device_id, last_seen_ms FROM devices").decode((String, Int64).self) {
            devices[id] = seen
        }
        return devices
    }

    public func retentionCounts() async throws -> RetentionCounts {
        var counts = RetentionCounts()
        for row in try await database.rows("SELECT name, rows, dropped FROM retention") {
            let name: String = try row.value("name")
            counts.rows[name] = try row.value("rows")
            counts.dropped[name] = try row.value("dropped")
        }
        return counts
    }

    public func register(deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool {
        try await admittingWrite(deviceID, nowMs: nowMs) { connection, logger, _ in
            let existed =
                try await connection.rows(
                    "SELECT registered_at_ms IS NOT NULL AS registered FROM devices WHERE device_id = \(deviceID) FOR UPDATE",
                    logger: logger
                ).first?.value("registered", as: Bool.self) ?? false
            try await connection.execute(
                """
                UPDATE devices SET last_seen_ms = greatest(last_seen_ms, \(nowMs)),
                  device_name = coalesce(\(fields.deviceName), device_name), location = coalesce(\(fields.location), location),
                  description = coalesce(\(fields.description), description),
                  firmware_version = coalesce(\(fields.firmwareVersion), firmware_version),
                  registered_at_ms = coalesce(registered_at_ms, \(nowMs))
                WHERE device_id = \(deviceID)
                """,
                logger: logger
            )
            return !existed
        }
    }

    public func device(_ deviceID: String) async throws -> DeviceRow? {
        try await database.rows("SELECT * FROM devices WHERE device_id = \(deviceID)").first.map(DeviceRow.init)
    }

    public func devices(after: String?, limit: Int, filter: DeviceFilter) async throws -> [DeviceRow] {
        // `starts_with` compares characters: a prefix with LIKE's wildcards in it means itself.
        try await database.rows(
            """
            SELECT * FROM devices WHERE device_id > \(after ?? "")
              AND (\(filter.firmwareVersion)::text IS NULL OR firmware_version = \(filter.firmwareVersion))
              AND (\(filter.idPrefix)::text IS NULL OR starts_with(device_id, \(filter.idPrefix)))
              AND (\(filter.admission)::text IS NULL OR admission = \(filter.admission))
            ORDER BY device_id LIMIT \(max(0, limit))
            """
        ).map(DeviceRow.init)
    }

    public func createDevice(_ deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            guard try await connection.rows("SELECT 1 FROM devices WHERE device_id = \(deviceID)", logger: logger).isEmpty else {
                return false
            }
            try await PostgresRetention.adopt(connection, logger, deviceID: deviceID, nowMs: nowMs)
            try await Self.setFields(connection, logger, deviceID: deviceID, fields: fields, keepingUnset: false)
            return true
        }
    }

    public func updateDevice(_ deviceID: String, fields: DeviceFields) async throws -> DeviceRow? {
        try await writer.write { connection, logger in
            guard !(try await connection.rows("SELECT 1 FROM devices WHERE device_id = \(deviceID)", logger: logger).isEmpty) else {
                return nil
            }
            try await PostgresRetention.adopt(connection, logger, deviceID: deviceID, nowMs: 0)
            try await Self.setFields(connection, logger, deviceID: deviceID, fields: fields, keepingUnset: true)
            return try await connection.rows("SELECT * FROM devices WHERE device_id = \(deviceID)", logger: logger).first.map(DeviceRow.init)
        }
    }

    /// Writes the operator's fields; `keepingUnset`: a field not given keeps its value (an edit), else it is cleared.
    private static func setFields(
        _ connection: PostgresConnection,
        _ logger: Logger,
        deviceID: String,
        fields: DeviceFields,
        keepingUnset: Bool
    ) async throws {
        try await connection.execute(
            """
            UPDATE devices SET device_name = CASE WHEN \(keepingUnset) THEN coalesce(\(fields.deviceName), device_name) ELSE \(fields.deviceName) END,
              location = CASE WHEN \(keepingUnset) THEN coalesce(\(fields.location), location) ELSE \(fields.location) END,
              description = CASE WHEN \(keepingUnset) THEN coalesce(\(fields.description), description) ELSE \(fields.description) END,
              firmware_version = CASE WHEN \(keepingUnset) THEN coalesce(\(fields.firmwareVersion), firmware_version)
                ELSE \(fields.firmwareVersion) END
            WHERE device_id = \(deviceID)
            """,
            logger: logger
        )
    }

    public func deleteDevice(_ deviceID: String, nowMs: Int64) async throws -> Bool {
        try await writer.write { connection, logger in
            let row = try await connection.rows(
                "SELECT admission, last_nonce FROM devices WHERE device_id = \(deviceID) FOR UPDATE",
                logger: logger
            ).first
            if let nonce = try row?.value("last_nonce", as: Int64?.self) {
                // The tombstone keeps the nonce: a deleted device's old uploads stay replays.
                try await connection.execute(
                    """
                    INSERT INTO device_tombstones (device_id, last_nonce, deleted_at_ms) VALUES (\(deviceID), \(nonce), \(nowMs))
                    ON CONFLICT (device_id) DO UPDATE SET last_nonce = greatest(device_tombstones.last_nonce, excluded.last_nonce),
                      deleted_at_ms = excluded.deleted_at_ms
                    """,
                    logger: logger
                )
            }
            if try row?.value("admission", as: String.self) == "pending" { try await PostgresRetention.adjustPending(connection, logger, by: -1) }
            let existed = !(try await connection.rows("DELETE FROM devices WHERE device_id = \(deviceID) RETURNING 1", logger: logger).isEmpty)
            try await connection.execute(
                "UPDATE commands SET status = 'cancelled', finished_at_ms = \(nowMs) WHERE device_id = \(deviceID) AND status = 'pending'",
                logger: logger
            )
            return existed
        }
    }

    /// One job per writer lane, with that lane's devices: a flush of every device in one statement locked rows of all
    /// lanes at once, and closed deadlock cycles with the uploads each lane was committing.
    public func recordLastSeen(_ lastSeen: [String: Int64]) async throws {
        let tickets = Dictionary(grouping: lastSeen.keys, by: writer.lane(of:)).values.map { devices in
            let times = devices.map { lastSeen[$0]! }
            return writer.enqueue(device: devices[0]) { connection, logger in
                // Update only: device routes are unauthenticated, so a poll must not create registry rows.
                try await connection.execute(
                    """
                    UPDATE devices SET last_seen_ms = greatest(devices.last_seen_ms, seen.at)
                    FROM unnest(\(devices)::text[], \(times)::bigint[]) AS seen(id, at) WHERE devices.device_id = seen.id
                    """,
                    logger: logger
                )
            }
        }
        for ticket in tickets { try await ticket.value() }
    }
}

extension DeviceRow {
    init(_ row: PostgresRandomAccessRow) throws {
        self.init(
            deviceID: try row.value("device_id"),
            deviceName: try row.value("device_name"),
            location: try row.value("location"),
            description: try row.value("description"),
            firmwareVersion: try row.value("firmware_version"),
            registeredAtMs: try row.value("registered_at_ms"),
            firstSeenMs: try row.value("first_seen_ms"),
            lastSeenMs: try row.value("last_seen_ms"),
            uploadCount: try row.value("upload_count"),
            admission: try row.value("admission"),
            boundAddress: try row.value("bound_address"),
            boundAtMs: try row.value("bound_at_ms"),
            nonceJumpsRefused: try row.value("nonce_jumps_refused"),
            lastRefusedNonce: try row.value("last_refused_nonce"),
            refusedUploads: try row.value("refused_uploads")
        )
    }
}
