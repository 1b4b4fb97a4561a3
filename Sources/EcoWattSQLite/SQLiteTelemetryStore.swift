import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// ``TelemetryStore`` on SQLite: reads from the pool, every write through the ``GroupCommitWriter``.
public struct SQLiteTelemetryStore: TelemetryStore {
    public let database: EcoWattDatabase
    public let writer: GroupCommitWriter

    public init(database: EcoWattDatabase, writer: GroupCommitWriter) {
        self.database = database
        self.writer = writer
    }

    public func ingestState(deviceID: String) async throws -> DeviceIngestState {
        try await database.pool.read { db in
            let row = try Row.fetchOne(
                db,
                sql: "SELECT last_nonce, stream_state, last_upload_ms FROM devices WHERE device_id = ?",
                arguments: [deviceID]
            )
            // A deleted device's tombstone keeps its last nonce: deleting a device never reopens replay.
            let nonce =
                row == nil
                ? try Int64.fetchOne(db, sql: "SELECT last_nonce FROM device_tombstones WHERE device_id = ?", arguments: [deviceID])
                : row?["last_nonce"] as Int64?
            let blob = row?["stream_state"] as Data?
            let stream = blob.flatMap { DeviceStreamState(serialized: Array($0)) } ?? DeviceStreamState()
            return DeviceIngestState(
                lastNonce: nonce.map { UInt32(truncatingIfNeeded: $0) },
                stream: stream,
                lastUploadMs: row?["last_upload_ms"]
            )
        }
    }

    public func submit(_ record: IngestRecord) -> WriteTicket<Void> {
        writer.enqueue { db in try Self.apply(record, db) }
    }

    /// Writes one accepted upload inside an open transaction (the writer job of ``submit(_:)``; also used by
    /// `ecowatt bench` to pre-fill databases).
    public static func apply(_ record: IngestRecord, _ db: Database) throws {
        let device = record.deviceID
        let now = record.receivedAtMs
        let admission = try String.fetchOne(
            db.cachedStatement(sql: "SELECT admission FROM devices WHERE device_id = ?"),
            arguments: [device]
        )
        if admission == nil,
            let tombstone = try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT last_nonce FROM device_tombstones WHERE device_id = ?"),
                arguments: [device]
            )
        {
            guard Int64(record.nonce) > tombstone else {
                throw StoreError.nonceNotIncreasing(deviceID: device, nonce: record.nonce, stored: UInt32(truncatingIfNeeded: tombstone))
            }
            try db.execute(sql: "DELETE FROM device_tombstones WHERE device_id = ?", arguments: [device])
        }
        // A verified upload: the device leaves the pending set (caps never drop it from now on).
        if admission == "pending" { try Retention.leavePending(db, deviceID: device) }
        // Anti-replay guard inside the transaction: the nonce must still be greater than the stored one.
        try db.cachedStatement(
            sql: """
                INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, upload_count, last_nonce, stream_state, admission,
                  last_upload_ms, bound_address, bound_at_ms)
                VALUES (?1, ?2, ?2, 1, ?3, ?4, 'verified', ?2, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?2 END)
                ON CONFLICT(device_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
                  upload_count = upload_count + 1, last_nonce = excluded.last_nonce, stream_state = excluded.stream_state,
                  admission = CASE WHEN devices.admission = 'operator' THEN 'operator' ELSE 'verified' END,
                  last_upload_ms = excluded.last_upload_ms,
                  bound_address = coalesce(excluded.bound_address, devices.bound_address),
                  bound_at_ms = coalesce(excluded.bound_at_ms, devices.bound_at_ms)
                WHERE devices.last_nonce IS NULL OR excluded.last_nonce > devices.last_nonce
                """
        ).execute(arguments: [device, now, Int64(record.nonce), Data(record.streamState.serialized), record.clientAddress])
        if db.changesCount == 0 {
            let stored = try Int64.fetchOne(
                db,
                sql: "SELECT last_nonce FROM devices WHERE device_id = ?",
                arguments: [device]
            )
            throw StoreError.nonceNotIncreasing(
                deviceID: device,
                nonce: record.nonce,
                stored: UInt32(truncatingIfNeeded: stored ?? 0)
            )
        }
        let packetInsert = try db.cachedStatement(
            sql: """
                INSERT INTO packets (device_id, nonce, received_at_ms, packet_index, marker, method, register_layout,
                  sample_count, last_sample_ms, decoded, approximate, truncated, reason, detail, blob, compressed_size,
                  original_size, serial, time_estimated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        for packet in record.packets where !packet.resend {
            let layout = packet.registerLayout.map(String.init).joined(separator: ",")
            let keepBlob = !packet.isDecoded || packet.truncated
            try packetInsert.execute(arguments: [
                device, Int64(record.nonce), now, packet.index, packet.marker.map { Int($0) }, packet.method, layout,
                packet.sampleCount, packet.lastSampleEpochMs, packet.isDecoded, packet.approximate, packet.truncated,
                packet.reason?.rawValue, packet.detail, keepBlob ? Data(packet.blob) : nil, packet.compressedSize,
                packet.originalSize, packet.serial, packet.timeEstimated,
            ])
            let packetID = db.lastInsertedRowID
            let samples = try insertSamples(
                db,
                device: device,
                packetID: packetID,
                layout: layout,
                rows: packet.samples ?? [],
                times: packet.sampleTimesMs,
                method: packet.method,
                ratio: packet.ratio,
                approximate: packet.approximate,
                timeEstimated: packet.timeEstimated,
                noteFirst: packet.mayBeRetimed
            )
            if record.queueForFeed { try queueForFeed(db, packetID: packetID, samples: samples) }
        }
        for update in record.updates { try apply(update, device: device, queueForFeed: record.queueForFeed, db) }
    }

    /// Inserts one packet's sample rows (consecutive ids: the writer is the only one) and, when it may be re-timed, notes
    /// the first on the packet.
    private static func insertSamples(
        _ db: Database,
        device: String,
        packetID: Int64,
        layout: String,
        rows: [[UInt16]],
        times: [Int64],
        method: String,
        ratio: Double,
        approximate: Bool,
        timeEstimated: Bool,
        noteFirst: Bool = true
    ) throws -> (first: Int64, last: Int64)? {
        let sampleInsert = try db.cachedStatement(
            sql: """
                INSERT INTO samples (device_id, packet_id, ts_ms, register_layout, raw_values, method, ratio, approximate,
                  time_estimated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        var ids: (first: Int64, last: Int64)?
        for (row, time) in zip(rows, times) {
            try sampleInsert.execute(arguments: [
                device, packetID, time, layout, row.map(String.init).joined(separator: ","), method, ratio, approximate,
                timeEstimated,
            ])
            ids = (ids?.first ?? db.lastInsertedRowID, db.lastInsertedRowID)
        }
        // Only a packet a later upload may re-time needs it (an extra statement on the hot path otherwise).
        if noteFirst, let ids {
            try db.cachedStatement(sql: "UPDATE packets SET first_sample_id = ? WHERE id = ?").execute(arguments: [ids.first, packetID])
        }
        return ids
    }

    private static func queueForFeed(_ db: Database, packetID: Int64, samples: (first: Int64, last: Int64)?) throws {
        try db.cachedStatement(sql: "INSERT INTO mqtt_outbox (packet_id, first_sample_id, last_sample_id) VALUES (?, ?, ?)")
            .execute(arguments: [packetID, samples?.first, samples?.last])
    }

    /// A packet of an earlier upload decoded now (its samples inserted, the MQTT feed told) or re-timed.
    private static func apply(_ update: StreamUpdate, device: String, queueForFeed: Bool, _ db: Database) throws {
        guard
            let packet = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT id, register_layout, method, compressed_size, original_size, approximate, first_sample_id
                        FROM packets WHERE device_id = ? AND serial = ?
                        """
                ),
                arguments: [device, update.serial]
            )
        else { return }  // dropped meanwhile (retention)
        let packetID: Int64 = packet["id"]
        if let rows = update.samples {
            try db.cachedStatement(
                sql: "UPDATE packets SET decoded = 1, reason = NULL, detail = NULL, blob = NULL, time_estimated = ? WHERE id = ?"
            ).execute(arguments: [update.timeEstimated, packetID])
            let original: Int = packet["original_size"]
            let compressed: Int = packet["compressed_size"]
            let samples = try insertSamples(
                db,
                device: device,
                packetID: packetID,
                layout: packet["register_layout"],
                rows: rows,
                times: update.sampleTimesMs,
                method: packet["method"],
                ratio: original > 0 ? Double(compressed) / Double(original) : 0,
                approximate: packet["approximate"],
                timeEstimated: update.timeEstimated
            )
            if queueForFeed { try Self.queueForFeed(db, packetID: packetID, samples: samples) }
        } else if let first = packet["first_sample_id"] as Int64? {
            let retime = try db.cachedStatement(sql: "UPDATE samples SET ts_ms = ? WHERE id = ? AND packet_id = ?")
            for (offset, time) in update.sampleTimesMs.enumerated() {
                try retime.execute(arguments: [time, first + Int64(offset), packetID])
            }
        }
    }

    public func submitStreamState(deviceID: String, state: DeviceStreamState) -> WriteTicket<Void> {
        let bytes = Data(state.serialized)
        return writer.enqueue { db in
            try db.execute(sql: "UPDATE devices SET stream_state = ? WHERE device_id = ?", arguments: [bytes, deviceID])
        }
    }

    public func recordNonceJumpRefused(deviceID: String, nonce: UInt32) async throws {
        try await writer.write { db in
            try db.execute(
                sql: """
                    UPDATE devices SET nonce_jumps_refused = nonce_jumps_refused + 1, last_refused_nonce = ?
                    WHERE device_id = ?
                    """,
                arguments: [Int64(nonce), deviceID]
            )
        }
    }

    public func submitNonceReset(deviceID: String) -> WriteTicket<Bool> {
        writer.enqueue { db in
            try db.execute(
                sql: "UPDATE devices SET last_nonce = NULL, last_upload_ms = NULL WHERE device_id = ? AND last_nonce IS NOT NULL",
                arguments: [deviceID]
            )
            let changed = db.changesCount > 0
            try db.execute(sql: "DELETE FROM device_tombstones WHERE device_id = ?", arguments: [deviceID])
            return changed || db.changesCount > 0
        }
    }

    public func latestSample(deviceID: String) async throws -> SampleRow? {
        try await database.pool.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT * FROM samples WHERE device_id = ? ORDER BY ts_ms DESC, id DESC LIMIT 1",
                arguments: [deviceID]
            ).map(Self.sample)
        }
    }

    public func samples(deviceID: String, fromMs: Int64, toMs: Int64, limit: Int) async throws -> [SampleRow] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM samples WHERE device_id = ? AND ts_ms BETWEEN ? AND ?
                    ORDER BY ts_ms, id LIMIT ?
                    """,
                arguments: [deviceID, fromMs, toMs, limit]
            ).map(Self.sample)
        }
    }

    public func packets(deviceID: String, limit: Int) async throws -> [PacketRow] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM packets WHERE device_id = ? ORDER BY id DESC LIMIT ?",
                arguments: [deviceID, limit]
            ).map { row in
                PacketRow(
                    id: row["id"],
                    deviceID: row["device_id"],
                    nonce: UInt32(truncatingIfNeeded: row["nonce"] as Int64),
                    packetIndex: row["packet_index"],
                    marker: (row["marker"] as Int?).map { UInt8(truncatingIfNeeded: $0) },
                    method: row["method"],
                    registerLayout: Self.integers(row["register_layout"]),
                    sampleCount: row["sample_count"],
                    lastSampleMs: row["last_sample_ms"],
                    decoded: row["decoded"],
                    approximate: row["approximate"],
                    truncated: row["truncated"],
                    reason: row["reason"],
                    blob: (row["blob"] as Data?).map(Array.init),
                    detail: row["detail"],
                    serial: row["serial"],
                    timeEstimated: row["time_estimated"]
                )
            }
        }
    }

    public func deviceKeys() async throws -> [String: [UInt8]] {
        try await database.pool.read { db in
            var keys = [String: [UInt8]]()
            for row in try Row.fetchAll(db, sql: "SELECT device_id, key_hex FROM device_keys") {
                if let key = HexCoding.decode(row["key_hex"] as String) { keys[row["device_id"]] = key }
            }
            return keys
        }
    }

    public func setDeviceKey(deviceID: String, key: [UInt8]?) async throws {
        try await writer.write { db in try Self.setDeviceKey(db, deviceID: deviceID, key: key) }
    }

    /// Sets (or with `nil` removes) a device key on `db` (used directly by the CLI).
    public static func setDeviceKey(_ db: Database, deviceID: String, key: [UInt8]?) throws {
        if let key {
            try db.execute(
                sql: """
                    INSERT INTO device_keys (device_id, key_hex, updated_at_ms) VALUES (?, ?, ?)
                    ON CONFLICT(device_id) DO UPDATE SET key_hex = excluded.key_hex, updated_at_ms = excluded.updated_at_ms
                    """,
                arguments: [deviceID, HexCoding.encode(key), Int64(Date().timeIntervalSince1970 * 1000)]
            )
        } else {
            try db.execute(sql: "DELETE FROM device_keys WHERE device_id = ?", arguments: [deviceID])
        }
    }

    static func sample(_ row: Row) -> SampleRow {
        SampleRow(
            deviceID: row["device_id"],
            timestampMs: row["ts_ms"],
            registerLayout: integers(row["register_layout"]),
            rawValues: integers(row["raw_values"]).map { UInt16(truncatingIfNeeded: $0) },
            method: row["method"],
            ratio: row["ratio"],
            approximate: row["approximate"],
            timeEstimated: row["time_estimated"]
        )
    }

    static func integers(_ text: String) -> [Int] {
        text.split(separator: ",").compactMap { Int($0) }
    }
}
