import EcoWattProtocol
import EcoWattStorage
import Logging
import PostgresNIO

/// Stored telemetry on PostgreSQL, in the same ``TelemetryChunk`` blobs as on SQLite (`telemetry_chunks`, found by
/// `(device_id, last_ms, first_ms)`; the device row names the chunk its next packet joins); ids as ``ChunkReading``.
enum PostgresChunks {
    static func decode(_ row: PostgresRandomAccessRow) throws -> ChunkReading.Stored {
        let body: ByteBuffer = try row.value("body")
        return ChunkReading.Stored(
            id: try row.value("id"),
            deviceID: try row.value("device_id"),
            chunk: try TelemetryChunk(decoding: Array(body.readableBytesView))
        )
    }

    static func load(_ database: EcoWattPostgresDatabase, id: Int64) async throws -> ChunkReading.Stored? {
        try await database.rows("SELECT id, device_id, body FROM telemetry_chunks WHERE id = \(id)").first.map(decode)
    }

    static func load(_ connection: PostgresConnection, _ logger: Logger, id: Int64) async throws -> ChunkReading.Stored? {
        try await connection.rows("SELECT id, device_id, body FROM telemetry_chunks WHERE id = \(id)", logger: logger).first.map(decode)
    }

    static func save(_ connection: PostgresConnection, _ logger: Logger, id: Int64, _ chunk: TelemetryChunk) async throws {
        guard let range = chunk.timeRange else { return }
        try await connection.execute(
            """
            UPDATE telemetry_chunks SET first_ms = \(range.lowerBound), last_ms = \(range.upperBound),
              body = \(ByteBuffer(bytes: chunk.encoded())) WHERE id = \(id)
            """,
            logger: logger
        )
    }

    /// Appends `packet` to the device's open chunk when it fits there, else to a new chunk that becomes the open one.
    /// Returns the packet's id and the open chunk.
    static func append(
        _ connection: PostgresConnection,
        _ logger: Logger,
        device: String,
        layout: [Int],
        packet: ChunkPacket,
        open: Int64?
    ) async throws -> (packetID: Int64, open: Int64) {
        if let open,
            let body = try await connection.rows(
                "SELECT body FROM telemetry_chunks WHERE id = \(open) AND device_id = \(device)",
                logger: logger
            ).first?.value("body", as: ByteBuffer.self),
            // A chunk that does not decode (a damaged row) is left as it is; the packet starts a new one.
            var chunk = try? TelemetryChunk(decoding: Array(body.readableBytesView)),
            chunk.accepts(packet, layout: layout, encodedSize: body.readableBytes)
        {
            chunk.packets.append(packet)
            try await save(connection, logger, id: open, chunk)
            return (ChunkReading.packetID(chunk: open, place: chunk.packets.count - 1), open)
        }
        let chunk = TelemetryChunk(layout: layout, packets: [packet])
        let range = packet.timeRange
        let id =
            try await connection.rows(
                """
                INSERT INTO telemetry_chunks (device_id, first_ms, last_ms, body)
                VALUES (\(device), \(range.lowerBound), \(range.upperBound), \(ByteBuffer(bytes: chunk.encoded()))) RETURNING id
                """,
                logger: logger
            ).first?.value("id", as: Int64.self) ?? 0
        try await connection.execute("UPDATE devices SET open_chunk = \(id) WHERE device_id = \(device)", logger: logger)
        return (ChunkReading.packetID(chunk: id, place: 0), id)
    }

    /// Applies a later upload's decoding or re-timing to the packet it names. Returns the packet's id and the times its
    /// samples had and have (both need their rollups recomputed); `nil` when the packet is gone (retention).
    static func complete(
        _ connection: PostgresConnection,
        _ logger: Logger,
        device: String,
        update: StreamUpdate
    ) async throws -> (packetID: Int64, times: [Int64])? {
        guard
            let packetID = try await connection.rows(
                "SELECT packet_id FROM telemetry_refs WHERE device_id = \(device) AND serial = \(update.serial)",
                logger: logger
            ).first?.value("packet_id", as: Int64.self)
        else { return nil }
        let (id, place) = ChunkReading.split(packetID)
        guard var stored = try await load(connection, logger, id: id), stored.deviceID == device, place < stored.chunk.packets.count
        else { return nil }
        let before = stored.chunk.packets[place].sampleTimesMs
        stored.chunk.packets[place].complete(with: update)
        try await save(connection, logger, id: id, stored.chunk)
        return (packetID, before + stored.chunk.packets[place].sampleTimesMs)
    }
}
