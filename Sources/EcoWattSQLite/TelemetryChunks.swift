import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// Stored telemetry in SQLite (issue 17, schema v12): `telemetry_chunks` holds a device's packets in
/// ``TelemetryChunk`` blobs, found by `(device_id, last_ms, first_ms)`; the device row names the chunk its next packet
/// joins (`open_chunk`). A packet's id is its chunk's id shifted left by 8 plus its place in the chunk.
/// `telemetry_refs` finds, by the decoder's serial, the few packets a later upload may still decode or re-time.
enum TelemetryChunks {
    static func decode(_ row: Row) throws -> ChunkReading.Stored {
        let body: Data = row["body"]
        return ChunkReading.Stored(id: row["id"], deviceID: row["device_id"], chunk: try TelemetryChunk(decoding: [UInt8](body)))
    }

    static func load(_ db: Database, id: Int64) throws -> ChunkReading.Stored? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT id, device_id, body FROM telemetry_chunks WHERE id = ?"), arguments: [id])
            .map(decode)
    }

    static func save(_ db: Database, id: Int64, _ chunk: TelemetryChunk) throws {
        guard let range = chunk.timeRange else { return }
        try db.cachedStatement(sql: "UPDATE telemetry_chunks SET first_ms = ?, last_ms = ?, body = ? WHERE id = ?")
            .execute(arguments: [range.lowerBound, range.upperBound, Data(chunk.encoded()), id])
    }

    /// Appends `packet` to the device's open chunk when it fits there, else to a new chunk that becomes the open one.
    /// Returns the packet's id and the open chunk.
    static func append(
        _ db: Database,
        device: String,
        layout: [Int],
        packet: ChunkPacket,
        open: Int64?
    ) throws -> (packetID: Int64, open: Int64) {
        if let open,
            let body = try Data.fetchOne(
                db.cachedStatement(sql: "SELECT body FROM telemetry_chunks WHERE id = ? AND device_id = ?"),
                arguments: [open, device]
            ),
            // A chunk that does not decode (a damaged file) is left as it is; the packet starts a new one.
            var chunk = try? TelemetryChunk(decoding: [UInt8](body)),
            chunk.accepts(packet, layout: layout, encodedSize: body.count)
        {
            chunk.packets.append(packet)
            try save(db, id: open, chunk)
            return (ChunkReading.packetID(chunk: open, place: chunk.packets.count - 1), open)
        }
        let chunk = TelemetryChunk(layout: layout, packets: [packet])
        let range = packet.timeRange
        try db.cachedStatement(sql: "INSERT INTO telemetry_chunks (device_id, first_ms, last_ms, body) VALUES (?, ?, ?, ?)")
            .execute(arguments: [device, range.lowerBound, range.upperBound, Data(chunk.encoded())])
        let id = db.lastInsertedRowID
        try db.cachedStatement(sql: "UPDATE devices SET open_chunk = ? WHERE device_id = ?").execute(arguments: [id, device])
        return (ChunkReading.packetID(chunk: id, place: 0), id)
    }

    /// Notes that a later upload may decode or re-time the packet (found by its serial).
    static func addReference(_ db: Database, device: String, serial: Int64, packetID: Int64) throws {
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO telemetry_refs (device_id, serial, packet_id) VALUES (?, ?, ?)")
            .execute(arguments: [device, serial, packetID])
    }

    /// Applies a later upload's decoding or re-timing to the packet it names. Returns the packet's id and the times its
    /// samples had and have (both need their rollups recomputed); `nil` when the packet is gone (retention).
    static func complete(_ db: Database, device: String, update: StreamUpdate) throws -> (packetID: Int64, times: [Int64])? {
        guard
            let packetID = try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT packet_id FROM telemetry_refs WHERE device_id = ? AND serial = ?"),
                arguments: [device, update.serial]
            )
        else { return nil }
        let (id, place) = ChunkReading.split(packetID)
        guard var stored = try load(db, id: id), stored.deviceID == device, place < stored.chunk.packets.count else { return nil }
        let before = stored.chunk.packets[place].sampleTimesMs
        stored.chunk.packets[place].complete(with: update)
        try save(db, id: id, stored.chunk)
        return (packetID, before + stored.chunk.packets[place].sampleTimesMs)
    }

    /// Chunks of `device` that hold anything in `[fromMs, toMs]`, by their earliest time (one index-only scan, then
    /// the bodies as the caller asks for them).
    static func overlapping(_ db: Database, device: String, fromMs: Int64, toMs: Int64) throws -> [(id: Int64, firstMs: Int64)] {
        try Row.fetchAll(
            db.cachedStatement(
                sql: "SELECT id, first_ms FROM telemetry_chunks WHERE device_id = ? AND last_ms >= ? AND first_ms <= ?"
            ),
            arguments: [device, fromMs, toMs]
        ).map { (id: $0["id"], firstMs: $0["first_ms"]) }.sorted { ($0.firstMs, $0.id) < ($1.firstMs, $1.id) }
    }
}

extension TelemetryChunks {
    /// Samples of `device` in `[fromMs, toMs]`, oldest first, at most `limit` (the historical query, and the raw input of
    /// a rollup refresh with no limit).
    static func samples(_ db: Database, device: String, fromMs: Int64, toMs: Int64, limit: Int) throws -> [SampleRow] {
        var selection = ChunkReading.SampleSelection(fromMs: fromMs, toMs: toMs, limit: limit)
        guard !selection.isEmpty else { return [] }
        for chunk in try overlapping(db, device: device, fromMs: fromMs, toMs: toMs) {
            guard selection.wants(firstMs: chunk.firstMs) else { break }
            if let stored = try load(db, id: chunk.id) { selection.add(stored) }
        }
        return selection.result()
    }
}
