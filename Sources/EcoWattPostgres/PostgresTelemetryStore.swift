import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import PostgresNIO

/// ``TelemetryStore`` on PostgreSQL (issue 22): reads on the pool, writes through the instance's ``PostgresWriter``.
///
/// Several instances may ingest one device at once. An upload's transaction locks the device's row first, so the
/// uploads of one device commit one after another whichever instance took them, and the nonce is a conditional update
/// (`… WHERE last_nonce IS NULL OR excluded.last_nonce > devices.last_nonce`): of identical uploads sent to two
/// instances at once, exactly one commits.
public struct PostgresTelemetryStore: TelemetryStore, OutboxStore {
    public let database: EcoWattPostgresDatabase
    public let writer: PostgresWriter
    /// The caps on pending devices (uploads refused under `device_admission = known` keep their ids as pending).
    public let retention: RetentionPolicy
    /// Told which pending devices the caps dropped.
    public let events: RegistryEvents
    /// Whether this instance drains the MQTT outbox.
    let drainer: OutboxDrainer

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
        drainer = OutboxDrainer(database: database)
    }

    public func ingestState(deviceID: String) async throws -> DeviceIngestState {
        let row = try await database.rows(
            """
            SELECT d.device_id IS NOT NULL AS known, d.last_nonce, d.stream_state, d.last_upload_ms, d.admission,
              d.state_version, t.last_nonce AS tombstone
            FROM (SELECT \(deviceID)::text AS id) k LEFT JOIN devices d ON d.device_id = k.id
              LEFT JOIN device_tombstones t ON t.device_id = k.id
            """
        ).first
        let known = try row?.value("known", as: Bool.self) ?? false
        // A deleted device's tombstone keeps its last nonce: deleting a device never reopens replay.
        let nonce: Int64? = known ? try row?.value("last_nonce") : try row?.value("tombstone")
        let blob: ByteBuffer? = try row?.value("stream_state")
        let admission: String? = try row?.value("admission")
        return DeviceIngestState(
            lastNonce: nonce.map { UInt32(truncatingIfNeeded: $0) },
            stream: blob.flatMap { DeviceStreamState(serialized: Array($0.readableBytesView)) } ?? DeviceStreamState(),
            lastUploadMs: try row?.value("last_upload_ms"),
            admitted: known && admission != "pending",
            version: try row?.value("state_version", as: Int64?.self) ?? 0
        )
    }

    public func submit(_ record: IngestRecord) -> WriteTicket<Void> {
        writer.enqueue(device: record.deviceID, queuesOutbox: record.queueForFeed) { connection, logger in
            try await Self.apply(record, connection, logger)
        }
    }

    /// Writes one accepted upload inside the writer's transaction.
    static func apply(_ record: IngestRecord, _ connection: PostgresConnection, _ logger: Logger) async throws {
        let device = record.deviceID
        let now = record.receivedAtMs
        // The device's row lock orders its uploads across instances for the rest of the transaction.
        let admission = try await connection.rows("SELECT admission FROM devices WHERE device_id = \(device) FOR UPDATE", logger: logger)
            .first?.value("admission", as: String.self)
        if admission == nil,
            let tombstone = try await connection.rows(
                "DELETE FROM device_tombstones WHERE device_id = \(device) RETURNING last_nonce",
                logger: logger
            ).first?.value("last_nonce", as: Int64.self)
        {
            guard Int64(record.nonce) > tombstone else {
                throw StoreError.nonceNotIncreasing(deviceID: device, nonce: record.nonce, stored: UInt32(truncatingIfNeeded: tombstone))
            }
        }
        // A verified upload: the device leaves the pending set (caps never drop it from now on).
        if admission == "pending" { try await PostgresRetention.adjustPending(connection, logger, by: -1) }
        let sampleTimes = record.packets.lazy.filter { !$0.resend && $0.isDecoded }.flatMap(\.sampleTimesMs)
        let (first, last) = (sampleTimes.min(), sampleTimes.max())
        let stream = ByteBuffer(bytes: record.streamState.serialized)
        let address = record.clientAddress
        let boundAt: Int64? = address == nil ? nil : now
        // Anti-replay guard: the nonce must still be greater than the stored one.
        let updated = try await connection.rows(
            """
            INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, upload_count, last_nonce, stream_state, admission,
              last_upload_ms, bound_address, bound_at_ms, rollup_from_ms, rollup_to_ms, state_version)
            VALUES (\(device), \(now), \(now), 1, \(Int64(record.nonce)), \(stream), 'verified', \(now), \(address), \(boundAt),
              \(first), \(last), 1)
            ON CONFLICT (device_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
              state_version = devices.state_version + 1,
              upload_count = devices.upload_count + 1, last_nonce = excluded.last_nonce, stream_state = excluded.stream_state,
              admission = CASE WHEN devices.admission = 'operator' THEN 'operator' ELSE 'verified' END,
              last_upload_ms = excluded.last_upload_ms,
              bound_address = coalesce(excluded.bound_address, devices.bound_address),
              bound_at_ms = coalesce(excluded.bound_at_ms, devices.bound_at_ms),
              rollup_from_ms = least(devices.rollup_from_ms, excluded.rollup_from_ms),
              rollup_to_ms = greatest(devices.rollup_to_ms, excluded.rollup_to_ms)
            WHERE (devices.last_nonce IS NULL OR excluded.last_nonce > devices.last_nonce)
              AND (\(record.expectedVersion)::bigint IS NULL OR devices.state_version = \(record.expectedVersion))
            RETURNING open_chunk
            """,
            logger: logger
        )
        guard let row = updated.first else {
            let stored = try await connection.rows("SELECT last_nonce FROM devices WHERE device_id = \(device)", logger: logger)
                .first?.value("last_nonce", as: Int64?.self)
            // The nonce rule first: a replay is a replay whatever the version.
            if stored.map({ Int64(record.nonce) > $0 }) ?? true { throw StoreError.stateChanged(deviceID: device) }
            throw StoreError.nonceNotIncreasing(deviceID: device, nonce: record.nonce, stored: UInt32(truncatingIfNeeded: stored ?? 0))
        }
        var open: Int64? = try row.value("open_chunk")
        for packet in record.packets where !packet.resend {
            let stored = ChunkPacket(packet, nonce: record.nonce, receivedAtMs: now)
            let appended = try await PostgresChunks.append(
                connection,
                logger,
                device: device,
                layout: packet.registerLayout,
                packet: stored,
                open: open
            )
            open = appended.open
            // Only a packet a later upload may decode or re-time needs to be found by its serial.
            if !packet.isDecoded || packet.mayBeRetimed {
                try await connection.execute(
                    """
                    INSERT INTO telemetry_refs (device_id, serial, packet_id) VALUES (\(device), \(packet.serial), \(appended.packetID))
                    ON CONFLICT (device_id, serial) DO UPDATE SET packet_id = excluded.packet_id
                    """,
                    logger: logger
                )
            }
            if record.queueForFeed { try await Self.queueForFeed(connection, logger, packetID: appended.packetID) }
        }
        // A packet an earlier upload stored, decoded or re-timed now: its old and new times (rare).
        var changedTimes: [Int64] = []
        for update in record.updates {
            guard let completed = try await PostgresChunks.complete(connection, logger, device: device, update: update) else { continue }
            changedTimes += completed.times
            if update.samples != nil, record.queueForFeed { try await Self.queueForFeed(connection, logger, packetID: completed.packetID) }
        }
        if let low = changedTimes.min(), let high = changedTimes.max() {
            try await connection.execute(
                """
                UPDATE devices SET rollup_from_ms = least(rollup_from_ms, \(low)), rollup_to_ms = greatest(rollup_to_ms, \(high))
                WHERE device_id = \(device)
                """,
                logger: logger
            )
        }
    }

    /// Queues a stored packet for the MQTT feed. Instances commit outbox rows one transaction at a time: ids are given at
    /// insert, and otherwise another instance's smaller id could commit after a drainer read past it, and never be
    /// published. The job must be enqueued with `queuesOutbox`: its batch then holds the order lock from its start to
    /// its commit (``PostgresWriter``).
    static func queueForFeed(_ connection: PostgresConnection, _ logger: Logger, packetID: Int64) async throws {
        try await connection.execute("INSERT INTO mqtt_outbox (packet_id) VALUES (\(packetID))", logger: logger)
    }

    public func submitStreamState(deviceID: String, state: DeviceStreamState) -> WriteTicket<Void> {
        let bytes = ByteBuffer(bytes: state.serialized)
        return writer.enqueue(device: deviceID) { connection, logger in
            try await connection.execute(
                "UPDATE devices SET stream_state = \(bytes), state_version = state_version + 1 WHERE device_id = \(deviceID)",
                logger: logger
            )
        }
    }

    public func recordNonceJumpRefused(deviceID: String, nonce: UInt32) async throws {
        try await writer.write(device: deviceID) { connection, logger in
            try await connection.execute(
                """
                UPDATE devices SET nonce_jumps_refused = nonce_jumps_refused + 1, last_refused_nonce = \(Int64(nonce))
                WHERE device_id = \(deviceID)
                """,
                logger: logger
            )
        }
    }

    public func submitNonceReset(deviceID: String) -> WriteTicket<Bool> {
        writer.enqueue(device: deviceID) { connection, logger in
            let reset = try await connection.rows(
                """
                UPDATE devices SET last_nonce = NULL, last_upload_ms = NULL, state_version = state_version + 1
                WHERE device_id = \(deviceID) AND last_nonce IS NOT NULL RETURNING 1
                """,
                logger: logger
            )
            let tombstone = try await connection.rows(
                "DELETE FROM device_tombstones WHERE device_id = \(deviceID) RETURNING 1",
                logger: logger
            )
            return !reset.isEmpty || !tombstone.isEmpty
        }
    }

    // MARK: History

    public func latestSample(deviceID: String) async throws -> SampleRow? {
        // Chunks by their latest time: the newest sample is in the first chunk that has samples, or in a later one whose
        // span still reaches past it. Read a few at a time: most devices need one.
        var latest = ChunkReading.LatestSample()
        var after: (lastMs: Int64, id: Int64)?
        while true {
            let rows = try await database.rows(
                """
                SELECT id, device_id, last_ms, body FROM telemetry_chunks WHERE device_id = \(deviceID)
                  AND (last_ms, id) < (\(after?.lastMs ?? .max), \(after?.id ?? .max))
                ORDER BY last_ms DESC, id DESC LIMIT 8
                """
            )
            for row in rows {
                let lastMs: Int64 = try row.value("last_ms")
                guard latest.wants(lastMs: lastMs) else { return latest.sample }
                latest.add(try PostgresChunks.decode(row))
                after = (lastMs, try row.value("id"))
            }
            if rows.count < 8 { return latest.sample }
        }
    }

    public func samples(deviceID: String, fromMs: Int64, toMs: Int64, limit: Int) async throws -> [SampleRow] {
        var selection = ChunkReading.SampleSelection(fromMs: fromMs, toMs: toMs, limit: limit)
        guard !selection.isEmpty else { return [] }
        let chunks = try await database.rows(
            """
            SELECT id, first_ms FROM telemetry_chunks WHERE device_id = \(deviceID) AND last_ms >= \(fromMs)
              AND first_ms <= \(toMs) ORDER BY first_ms, id
            """
        )
        for chunk in chunks {
            guard selection.wants(firstMs: try chunk.value("first_ms")) else { break }
            if let stored = try await PostgresChunks.load(database, id: try chunk.value("id")) { selection.add(stored) }
        }
        return selection.result()
    }

    public func packets(deviceID: String, before: Int64?, limit: Int) async throws -> [PacketRow] {
        // The chunk of `before` is the first that can hold older packets (a packet's id is its chunk's id and place).
        var rows: [PacketRow] = []
        var below = before.map { ($0 >> 8) + 1 } ?? .max
        while rows.count < limit {
            let chunks = try await database.rows(
                """
                SELECT id, device_id, body FROM telemetry_chunks WHERE device_id = \(deviceID) AND id < \(below)
                ORDER BY id DESC LIMIT 8
                """
            )
            for chunk in chunks where rows.count < limit {
                let stored = try PostgresChunks.decode(chunk)
                rows += stored.packetRows(before: before).prefix(limit - rows.count)
                below = stored.id
            }
            if chunks.count < 8 { break }
        }
        return rows
    }

    // MARK: MQTT outbox

    public func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxPacket] {
        // One instance drains at a time; the others hand out nothing (and take over when it dies).
        guard await drainer.holds() else { return [] }
        let rows = try await database.rows("SELECT id, packet_id FROM mqtt_outbox WHERE id > \(afterID) ORDER BY id LIMIT \(limit)")
        // Each chunk of the batch read and decoded once (a device's consecutive packets share one).
        var chunks: [Int64: ChunkReading.Stored] = [:]
        var packets: [OutboxPacket] = []
        for row in rows {
            let (chunkID, place) = ChunkReading.split(try row.value("packet_id"))
            if chunks[chunkID] == nil { chunks[chunkID] = try await PostgresChunks.load(database, id: chunkID) }
            // Gone (retention dropped it before the broker came back): nothing to publish.
            if let packet = chunks[chunkID]?.outboxPacket(id: try row.value("id"), place: place) { packets.append(packet) }
        }
        return packets
    }

    /// Stops draining the MQTT outbox from this instance (at shutdown, before the pool closes).
    public func stopDraining() {
        drainer.stop()
    }

    public func deleteOutbox(through id: Int64) async throws {
        try await writer.write { connection, logger in
            try await connection.execute("DELETE FROM mqtt_outbox WHERE id <= \(id)", logger: logger)
        }
    }

    public func outboxCount() async throws -> Int {
        try await database.rows("SELECT count(*) AS n FROM mqtt_outbox").first?.value("n", as: Int.self) ?? 0
    }
}
