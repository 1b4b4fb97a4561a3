import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// Schema v12 (issue 17): telemetry moves from a row per sample and per packet into ``TelemetryChunk`` blobs, with
/// rollups beside them. An existing database is converted in place, in the migration's transaction: every packet with
/// its samples, the MQTT outbox (same ids, so the publisher resumes where it was) and the serials a later upload may
/// still complete.
enum TelemetryMigration {
    static func run(_ db: Database) throws {
        try db.create(table: "telemetry_chunks") { t in
            t.primaryKey("id", .integer)
            t.column("device_id", .text).notNull()
            t.column("first_ms", .integer).notNull()  // earliest and latest time of any packet in the chunk
            t.column("last_ms", .integer).notNull()
            t.column("body", .blob).notNull()  // TelemetryChunk, format 1
        }
        // Covering for the time-range lookup: which chunks to read is found in the index alone.
        try db.create(index: "telemetry_chunks_device_time", on: "telemetry_chunks", columns: ["device_id", "last_ms", "first_ms"])
        try db.execute(
            sql: """
                CREATE TABLE telemetry_refs (device_id TEXT NOT NULL, serial INTEGER NOT NULL, packet_id INTEGER NOT NULL,
                  PRIMARY KEY (device_id, serial)) WITHOUT ROWID
                """
        )
        try db.create(index: "telemetry_refs_packet", on: "telemetry_refs", columns: ["packet_id"])
        try db.create(table: "telemetry_rollups") { t in
            t.column("device_id", .text).notNull()
            t.column("resolution", .text).notNull()  // minute | hour
            t.column("bucket_ms", .integer).notNull()
            t.column("stats", .blob).notNull()  // TelemetryRollup.encodedStatistics
        }
        try db.create(
            index: "telemetry_rollups_key",
            on: "telemetry_rollups",
            columns: ["device_id", "resolution", "bucket_ms"],
            unique: true
        )
        try db.create(index: "telemetry_rollups_age", on: "telemetry_rollups", columns: ["resolution", "bucket_ms"])
        try db.alter(table: "devices") { t in
            t.add(column: "open_chunk", .integer)  // the chunk the device's next packet joins
            t.add(column: "rollup_from_ms", .integer)  // the range changed since the rollups were computed
            t.add(column: "rollup_to_ms", .integer)
            t.add(column: "rollup_floor_ms", .integer)  // the latest sample time retention dropped
        }
        try db.execute(sql: "CREATE INDEX devices_rollup_changed ON devices(device_id) WHERE rollup_from_ms IS NOT NULL")
        try convertOutbox(db, newIDs: try convert(db))
        try db.execute(sql: "DROP TABLE samples")
        try db.execute(sql: "DROP TABLE packets")
    }

    /// A device's chunk being filled during the conversion.
    private struct Open {
        var chunk: TelemetryChunk
        var times: ClosedRange<Int64>?
        var refs: [(serial: Int64, place: Int)] = []
        var queued: [(old: Int64, place: Int)] = []
    }

    /// Moves every stored packet into chunks in arrival (row id) order, every device's chunk open at once, so that
    /// chunk ids follow arrival as the server's own writes do (retention drops chunks in id order). A chunk is written
    /// once it takes no more packets, or once arrivals moved past its span, so memory holds the chunks of the devices
    /// heard from within the last hour of the stored history.
    private static func convert(_ db: Database) throws -> [Int64: Int64] {
        try db.execute(sql: "CREATE INDEX migration_samples_packet ON samples(packet_id, id)")
        let queued = Set(try Int64.fetchAll(db, sql: "SELECT packet_id FROM mqtt_outbox"))
        var newIDs: [Int64: Int64] = [:]
        var open: [String: Open] = [:]

        func flush(_ device: String) throws {
            guard let pending = open.removeValue(forKey: device), let range = pending.chunk.timeRange else { return }
            try db.execute(
                sql: "INSERT INTO telemetry_chunks (device_id, first_ms, last_ms, body) VALUES (?, ?, ?, ?)",
                arguments: [device, range.lowerBound, range.upperBound, Data(pending.chunk.encoded())]
            )
            let id = db.lastInsertedRowID
            for ref in pending.refs {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO telemetry_refs (device_id, serial, packet_id) VALUES (?, ?, ?)",
                    arguments: [device, ref.serial, ChunkReading.packetID(chunk: id, place: ref.place)]
                )
            }
            for entry in pending.queued { newIDs[entry.old] = ChunkReading.packetID(chunk: id, place: entry.place) }
            try db.execute(sql: "UPDATE devices SET open_chunk = ? WHERE device_id = ?", arguments: [id, device])
            if let times = pending.times {
                try RollupLedger.markChanged(db, device: device, times: [times.lowerBound, times.upperBound])
            }
        }

        let packets = try Row.fetchCursor(db, sql: "SELECT * FROM packets ORDER BY id")
        var converted = 0
        while let row = try packets.next() {
            let device: String = row["device_id"]
            let layout = (row["register_layout"] as String).split(separator: ",").compactMap { Int($0) }
            let packet = try Self.packet(row, db)
            if let current = open[device], !current.chunk.accepts(packet, layout: layout, encodedSize: current.chunk.encoded().count) {
                try flush(device)
            }
            var current = open[device] ?? Open(chunk: TelemetryChunk(layout: layout))
            let place = current.chunk.packets.count
            current.chunk.packets.append(packet)
            if let first = packet.sampleTimesMs.min(), let last = packet.sampleTimesMs.max() {
                current.times = min(current.times?.lowerBound ?? first, first)...max(current.times?.upperBound ?? last, last)
            }
            let oldID: Int64 = row["id"]
            if queued.contains(oldID) { current.queued.append((oldID, place)) }
            if let serial = packet.serial, packet.samples == nil || row["first_sample_id"] != nil {
                current.refs.append((serial, place))
            }
            open[device] = current
            converted += 1
            // Chunks no later arrival can join (their span is over) are written, oldest first.
            if converted % 10_000 == 0 {
                let horizon = packet.receivedAtMs &- TelemetryChunk.maxSpanMs
                let done = open.filter { ($0.value.chunk.createdMs ?? .min) < horizon }
                    .sorted { ($0.value.chunk.createdMs ?? .min) < ($1.value.chunk.createdMs ?? .min) }.map(\.key)
                for device in done { try flush(device) }
            }
        }
        for device in open.sorted(by: { ($0.value.chunk.createdMs ?? .min) < ($1.value.chunk.createdMs ?? .min) }).map(\.key) {
            try flush(device)
        }
        return newIDs
    }

    /// The MQTT outbox keeps its ids and order; each row names the packet's new id.
    private static func convertOutbox(_ db: Database, newIDs: [Int64: Int64]) throws {
        try db.execute(sql: "CREATE TABLE mqtt_outbox_v12 (id INTEGER PRIMARY KEY AUTOINCREMENT, packet_id INTEGER NOT NULL)")
        for row in try Row.fetchAll(db, sql: "SELECT id, packet_id FROM mqtt_outbox ORDER BY id") {
            guard let packetID = newIDs[row["packet_id"]] else { continue }
            try db.execute(sql: "INSERT INTO mqtt_outbox_v12 (id, packet_id) VALUES (?, ?)", arguments: [row["id"], packetID])
        }
        // Outbox ids keep increasing past the old table's.
        let highest = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'mqtt_outbox'") ?? 0
        try db.execute(sql: "DROP TABLE mqtt_outbox")
        try db.execute(sql: "ALTER TABLE mqtt_outbox_v12 RENAME TO mqtt_outbox")
        try db.execute(
            sql: "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'mqtt_outbox'",
            arguments: [highest]
        )
        if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'mqtt_outbox'") == 0, highest > 0 {
            try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('mqtt_outbox', ?)", arguments: [highest])
        }
    }

    /// One stored packet row and its sample rows as a chunk keeps them.
    private static func packet(_ row: Row, _ db: Database) throws -> ChunkPacket {
        var packet = ChunkPacket(
            nonce: UInt32(truncatingIfNeeded: row["nonce"] as Int64),
            packetIndex: row["packet_index"],
            marker: (row["marker"] as Int?).map { UInt8(truncatingIfNeeded: $0) },
            method: row["method"],
            sampleCount: row["sample_count"],
            lastSampleMs: row["last_sample_ms"],
            receivedAtMs: row["received_at_ms"],
            compressedSize: row["compressed_size"],
            originalSize: row["original_size"]
        )
        packet.approximate = row["approximate"]
        packet.truncated = row["truncated"]
        packet.timeEstimated = row["time_estimated"]
        packet.reason = row["reason"]
        packet.detail = row["detail"]
        packet.blob = (row["blob"] as Data?).map { [UInt8]($0) }
        packet.serial = row["serial"]
        if row["decoded"] as Bool {
            let samples = try Row.fetchAll(
                db.cachedStatement(sql: "SELECT ts_ms, raw_values FROM samples WHERE packet_id = ? ORDER BY id"),
                arguments: [row["id"]]
            )
            packet.samples = samples.map { ($0["raw_values"] as String).split(separator: ",").compactMap { UInt16($0) } }
            packet.sampleTimesMs = samples.map { $0["ts_ms"] }
        }
        return packet
    }
}
