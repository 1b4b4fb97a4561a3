import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// ``TelemetryStore`` on SQLite: reads from the pool, every write through the ``GroupCommitWriter``.
public struct SQLiteTelemetryStore: TelemetryStore {
    public let database: EcoWattDatabase
    public let writer: GroupCommitWriter
    /// The caps on pending devices (uploads refused under `device_admission = known` keep their ids as pending).
    public let retention: RetentionPolicy
    /// Told which pending devices the caps dropped.
    public let events: RegistryEvents
    /// First uploads of many devices at once read their states together.
    private let states: GroupReader<String, DeviceIngestState>

    public init(
        database: EcoWattDatabase,
        writer: GroupCommitWriter,
        retention: RetentionPolicy = RetentionPolicy(),
        events: RegistryEvents = RegistryEvents()
    ) {
        self.database = database
        self.writer = writer
        self.retention = retention
        self.events = events
        states = GroupReader(pool: database.pool, read: Self.ingestState)
    }

    public func ingestState(deviceID: String) async throws -> DeviceIngestState {
        try await states.value(for: deviceID)
    }

    /// Read transactions and device states read by ``ingestState(deviceID:)`` so far.
    public var stateReads: (batches: Int, reads: Int) { states.counters }

    static func ingestState(_ db: Database, deviceID: String) throws -> DeviceIngestState {
        // Cached statements, as everywhere on the upload path: each new device's first upload reads here.
        let row = try Row.fetchOne(
            db.cachedStatement(
                sql: "SELECT last_nonce, stream_state, last_upload_ms, admission, state_version FROM devices WHERE device_id = ?"
            ),
            arguments: [deviceID]
        )
        // Columns by position, in the order selected (a read by name scans the row's names case-insensitively).
        // A deleted device's tombstone keeps its last nonce: deleting a device never reopens replay.
        let nonce =
            row == nil
            ? try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT last_nonce FROM device_tombstones WHERE device_id = ?"),
                arguments: [deviceID]
            )
            : row?[0] as Int64?
        let blob = row?[1] as Data?
        let stream = blob.flatMap { DeviceStreamState(serialized: Array($0)) } ?? DeviceStreamState()
        return DeviceIngestState(
            lastNonce: nonce.map { UInt32(truncatingIfNeeded: $0) },
            stream: stream,
            lastUploadMs: row?[2],
            admitted: row.map { $0[3] as String != "pending" } ?? false,
            version: row?[4] ?? 0
        )
    }

    public func submit(_ record: IngestRecord) -> WriteTicket<Void> {
        writer.enqueue { db in try Self.apply(record, db) }
    }

    /// Writes one accepted upload inside an open transaction (the writer job of ``submit(_:)``; also used by
    /// `ecowatt bench` to pre-fill databases).
    public static func apply(_ record: IngestRecord, _ db: Database) throws {
        let device = record.deviceID
        let now = record.receivedAtMs
        let deviceRow = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT admission, open_chunk FROM devices WHERE device_id = ?"),
            arguments: [device]
        )
        // By position: a read by name scans the row's names case-insensitively.
        let admission: String? = deviceRow?[0]
        var open: Int64? = deviceRow?[1]
        if admission == nil,
            let tombstone = try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT last_nonce FROM device_tombstones WHERE device_id = ?"),
                arguments: [device]
            )
        {
            guard Int64(record.nonce) > tombstone else {
                throw StoreError.nonceNotIncreasing(deviceID: device, nonce: record.nonce, stored: UInt32(truncatingIfNeeded: tombstone))
            }
            try db.cachedStatement(sql: "DELETE FROM device_tombstones WHERE device_id = ?").execute(arguments: [device])
        }
        // A verified upload: the device leaves the pending set (caps never drop it from now on).
        if admission == "pending" { try Retention.leavePending(db, deviceID: device) }
        // The time range the upload's own samples add, marked for the rollups in the same statement (?6, ?7: NULL when
        // none; the device row is written here anyway, so a separate update per upload is not needed).
        let sampleTimes = record.packets.lazy.filter { !$0.resend && $0.isDecoded }.flatMap(\.sampleTimesMs)
        // Anti-replay guard inside the transaction: the nonce must still be greater than the stored one.
        try db.cachedStatement(
            sql: """
                INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, upload_count, last_nonce, stream_state, admission,
                  last_upload_ms, bound_address, bound_at_ms, rollup_from_ms, rollup_to_ms, state_version)
                VALUES (?1, ?2, ?2, 1, ?3, ?4, 'verified', ?2, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?2 END, ?6, ?7, 1)
                ON CONFLICT(device_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
                  state_version = devices.state_version + 1,
                  upload_count = upload_count + 1, last_nonce = excluded.last_nonce, stream_state = excluded.stream_state,
                  admission = CASE WHEN devices.admission = 'operator' THEN 'operator' ELSE 'verified' END,
                  last_upload_ms = excluded.last_upload_ms,
                  bound_address = coalesce(excluded.bound_address, devices.bound_address),
                  bound_at_ms = coalesce(excluded.bound_at_ms, devices.bound_at_ms),
                  rollup_from_ms = min(coalesce(devices.rollup_from_ms, ?6), coalesce(?6, devices.rollup_from_ms)),
                  rollup_to_ms = max(coalesce(devices.rollup_to_ms, ?7), coalesce(?7, devices.rollup_to_ms))
                WHERE (devices.last_nonce IS NULL OR excluded.last_nonce > devices.last_nonce)
                  AND (?8 IS NULL OR devices.state_version = ?8)
                """
        ).execute(arguments: [
            device, now, Int64(record.nonce), Data(record.streamState.serialized), record.clientAddress, sampleTimes.min(),
            sampleTimes.max(), record.expectedVersion,
        ])
        if db.changesCount == 0 {
            let stored = try Int64.fetchOne(
                db.cachedStatement(
                    sql: "SELECT last_nonce FROM devices WHERE device_id = ?"
                ),
                arguments: [device]
            )
            // The nonce rule first: a replay is a replay whatever the version.
            if stored.map({ Int64(record.nonce) > $0 }) ?? true { throw StoreError.stateChanged(deviceID: device) }
            throw StoreError.nonceNotIncreasing(
                deviceID: device,
                nonce: record.nonce,
                stored: UInt32(truncatingIfNeeded: stored ?? 0)
            )
        }
        for packet in record.packets where !packet.resend {
            let stored = ChunkPacket(packet, nonce: record.nonce, receivedAtMs: now)
            let appended = try TelemetryChunks.append(db, device: device, layout: packet.registerLayout, packet: stored, open: open)
            open = appended.open
            // Only a packet a later upload may decode or re-time needs to be found by its serial.
            if !packet.isDecoded || packet.mayBeRetimed {
                try TelemetryChunks.addReference(db, device: device, serial: packet.serial, packetID: appended.packetID)
            }
            if record.queueForFeed { try queueForFeed(db, packetID: appended.packetID) }
        }
        // A packet an earlier upload stored, decoded or re-timed now: its old and new times (rare).
        var changedTimes: [Int64] = []
        for update in record.updates {
            guard let completed = try TelemetryChunks.complete(db, device: device, update: update) else { continue }
            changedTimes += completed.times
            if update.samples != nil, record.queueForFeed { try queueForFeed(db, packetID: completed.packetID) }
        }
        try RollupLedger.markChanged(db, device: device, times: changedTimes)
    }

    private static func queueForFeed(_ db: Database, packetID: Int64) throws {
        try db.cachedStatement(sql: "INSERT INTO mqtt_outbox (packet_id) VALUES (?)").execute(arguments: [packetID])
    }

    public func submitStreamState(deviceID: String, state: DeviceStreamState) -> WriteTicket<Void> {
        let bytes = Data(state.serialized)
        return writer.enqueue { db in
            try db.cachedStatement(
                sql: "UPDATE devices SET stream_state = ?, state_version = state_version + 1 WHERE device_id = ?"
            ).execute(
                arguments: [bytes, deviceID]
            )
        }
    }

    public func recordNonceJumpRefused(deviceID: String, nonce: UInt32) async throws {
        try await writer.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE devices SET nonce_jumps_refused = nonce_jumps_refused + 1, last_refused_nonce = ?
                    WHERE device_id = ?
                    """
            ).execute(
                arguments: [Int64(nonce), deviceID]
            )
        }
    }

    public func submitNonceReset(deviceID: String) -> WriteTicket<Bool> {
        writer.enqueue { db in
            try db.cachedStatement(
                sql: """
                    UPDATE devices SET last_nonce = NULL, last_upload_ms = NULL, state_version = state_version + 1
                    WHERE device_id = ? AND last_nonce IS NOT NULL
                    """
            ).execute(
                arguments: [deviceID]
            )
            let changed = db.changesCount > 0
            try db.cachedStatement(sql: "DELETE FROM device_tombstones WHERE device_id = ?").execute(arguments: [deviceID])
            return changed || db.changesCount > 0
        }
    }

    public func latestSample(deviceID: String) async throws -> SampleRow? {
        try await database.pool.read { db in
            // Chunks by their latest time: the newest sample is in the first chunk that has samples, or in a later one
            // whose span still reaches past it.
            let chunks = try Row.fetchCursor(
                db.cachedStatement(
                    sql: "SELECT id, device_id, last_ms, body FROM telemetry_chunks WHERE device_id = ? ORDER BY last_ms DESC, id DESC"
                ),
                arguments: [deviceID]
            )
            var latest = ChunkReading.LatestSample()
            while let row = try chunks.next(), latest.wants(lastMs: row["last_ms"]) {
                latest.add(try TelemetryChunks.decode(row))
            }
            return latest.sample
        }
    }

    public func samples(deviceID: String, fromMs: Int64, toMs: Int64, limit: Int) async throws -> [SampleRow] {
        try await database.pool.read { db in try TelemetryChunks.samples(db, device: deviceID, fromMs: fromMs, toMs: toMs, limit: limit) }
    }

    public func packets(deviceID: String, before: Int64?, limit: Int) async throws -> [PacketRow] {
        try await database.pool.read { db in
            // A packet's id is its chunk's id and its place (``ChunkReading/packetID(chunk:place:)``): the chunk of
            // `before` is the first that can hold older packets.
            let chunks = try Row.fetchCursor(
                db.cachedStatement(
                    sql: "SELECT id, device_id, body FROM telemetry_chunks WHERE device_id = ? AND id <= ? ORDER BY id DESC"
                ),
                arguments: [deviceID, before.map { $0 >> 8 } ?? Int64.max]
            )
            var rows: [PacketRow] = []
            while rows.count < limit, let row = try chunks.next() {
                rows += try TelemetryChunks.decode(row).packetRows(before: before).prefix(limit - rows.count)
            }
            return rows
        }
    }
}
