import EcoWattProtocol
import EcoWattStorage
import Logging
import PostgresNIO

/// Rollups and retention of telemetry on PostgreSQL, as on SQLite: a device's changed range is marked on its row by
/// ingest, and ``refreshRollups(limit:)`` recomputes the marked hours in the background.
extension PostgresTelemetryStore {
    public func rollups(
        deviceID: String,
        resolution: RollupResolution,
        fromMs: Int64,
        toMs: Int64,
        limit: Int
    ) async throws -> [TelemetryRollup] {
        try await database.rows(
            """
            SELECT bucket_ms, stats FROM telemetry_rollups WHERE device_id = \(deviceID) AND resolution = \(resolution.rawValue)
              AND bucket_ms BETWEEN \(resolution.bucket(of: fromMs)) AND \(toMs) ORDER BY bucket_ms LIMIT \(max(0, limit))
            """
        ).map { row in
            let stats: ByteBuffer = try row.value("stats")
            return try TelemetryRollup(bucketMs: try row.value("bucket_ms"), decodingStatistics: Array(stats.readableBytesView))
        }
    }

    public func refreshRollups(limit: Int) async throws -> Int {
        // Read the marks and the chunks, then write the buckets in the writer; a mark is cleared only if no upload of the
        // device committed since it was read (its upload count is unchanged), else the next refresh recomputes the range
        // with that upload in it. The buckets are written under the device row's lock, and only while the count is the
        // one read: another instance refreshing the same device at once waits for this commit, then finds its reads
        // either still current (it writes the same buckets again, deleting these first) or overtaken by an upload (it
        // writes nothing). Without the lock its insert ran into these buckets' keys (a unique violation), and a refresh
        // that read before an upload could overwrite one that read after it and had cleared the mark.
        let marks = try await database.rows(
            """
            SELECT device_id, upload_count, rollup_from_ms, rollup_to_ms, rollup_floor_ms FROM devices
            WHERE rollup_from_ms IS NOT NULL LIMIT \(max(0, limit))
            """
        )
        var work: [(device: String, uploads: Int64, from: Int64, to: Int64, end: Int64, buckets: [(RollupResolution, [TelemetryRollup])])] = []
        for mark in marks {
            let device: String = try mark.value("device_id")
            let plan = RollupRefreshRange(
                changedFrom: try mark.value("rollup_from_ms"),
                changedTo: try mark.value("rollup_to_ms"),
                floorMs: try mark.value("rollup_floor_ms")
            )
            let (from, to, end) = plan.map { ($0.from, $0.to, $0.end) } ?? (1, 0, 0)
            let samples =
                from <= to
                ? try await samples(deviceID: device, fromMs: from, toMs: to, limit: .max)
                    .map { (time: $0.timestampMs, layout: $0.registerLayout, values: $0.rawValues) } : []
            let buckets = RollupResolution.allCases.map { ($0, Array(TelemetryRollup.aggregate(samples, resolution: $0).values)) }
            work.append((device, try mark.value("upload_count"), from, to, end, buckets))
        }
        guard !work.isEmpty else { return 0 }
        try await writer.write { [work] connection, logger in
            for item in work {
                let current = try await connection.rows(
                    "SELECT upload_count FROM devices WHERE device_id = \(item.device) FOR UPDATE",
                    logger: logger
                )
                guard try current.first?.value("upload_count", as: Int64.self) == item.uploads else { continue }
                if item.from <= item.to {
                    for (resolution, buckets) in item.buckets {
                        try await connection.execute(
                            """
                            DELETE FROM telemetry_rollups WHERE device_id = \(item.device) AND resolution = \(resolution.rawValue)
                              AND bucket_ms BETWEEN \(item.from) AND \(item.to)
                            """,
                            logger: logger
                        )
                        for rollup in buckets {
                            try await connection.execute(
                                """
                                INSERT INTO telemetry_rollups (device_id, resolution, bucket_ms, stats)
                                VALUES (\(item.device), \(resolution.rawValue), \(rollup.bucketMs), \(ByteBuffer(bytes: rollup.encodedStatistics())))
                                """,
                                logger: logger
                            )
                        }
                    }
                }
                let next: Int64? = item.to < item.end ? item.to &+ 1 : nil
                try await connection.execute(
                    """
                    UPDATE devices SET rollup_from_ms = \(next),
                      rollup_to_ms = CASE WHEN \(next)::bigint IS NULL THEN NULL ELSE rollup_to_ms END
                    WHERE device_id = \(item.device) AND upload_count = \(item.uploads)
                    """,
                    logger: logger
                )
            }
        }
        return work.count
    }

    public func pruneTelemetry(_ cutoffs: TelemetryCutoffs, limit: Int) async throws -> Int {
        // A read first, as on SQLite: every instance runs the job every 30 s, and with nothing past retention it must
        // not cost a write transaction.
        guard try await anythingToPrune(cutoffs) else { return 0 }
        return try await writer.write { connection, logger in
            var dropped = 0
            // Chunks in id order are in arrival order: drop from the oldest while they arrived before the cutoff.
            let oldest = try await connection.rows(
                "SELECT id, device_id, last_ms, body FROM telemetry_chunks ORDER BY id LIMIT \(max(0, limit))",
                logger: logger
            )
            var floors: [String: Int64] = [:]
            for row in oldest {
                let body: ByteBuffer = try row.value("body")
                guard cutoffs.dropsChunk(Array(body.readableBytesView)) else { break }
                let id: Int64 = try row.value("id")
                try await connection.execute("DELETE FROM telemetry_chunks WHERE id = \(id)", logger: logger)
                try await connection.execute(
                    """
                    DELETE FROM telemetry_refs WHERE packet_id BETWEEN \(ChunkReading.packetID(chunk: id, place: 0))
                      AND \(ChunkReading.packetID(chunk: id, place: 255))
                    """,
                    logger: logger
                )
                let device: String = try row.value("device_id")
                floors[device] = max(floors[device] ?? .min, try row.value("last_ms"))
                dropped += 1
            }
            for (device, floor) in floors {
                try await connection.execute(
                    "UPDATE devices SET rollup_floor_ms = greatest(rollup_floor_ms, \(floor)) WHERE device_id = \(device)",
                    logger: logger
                )
            }
            for resolution in RollupResolution.allCases {
                let cutoff = cutoffs.rollupsBeforeMs(resolution)
                dropped += try await connection.rows(
                    """
                    DELETE FROM telemetry_rollups WHERE ctid IN (SELECT ctid FROM telemetry_rollups
                      WHERE resolution = \(resolution.rawValue) AND bucket_ms < \(cutoff) LIMIT \(max(0, limit))) RETURNING 1
                    """,
                    logger: logger
                ).count
            }
            return dropped
        }
    }

    /// Whether the oldest chunk arrived before the raw cutoff, or a rollup is older than its cutoff (both indexed).
    private func anythingToPrune(_ cutoffs: TelemetryCutoffs) async throws -> Bool {
        if let body = try await database.rows("SELECT body FROM telemetry_chunks ORDER BY id LIMIT 1").first?.value("body", as: ByteBuffer.self),
            cutoffs.dropsChunk(Array(body.readableBytesView))
        {
            return true
        }
        for resolution in RollupResolution.allCases {
            let old = try await database.rows(
                """
                SELECT 1 FROM telemetry_rollups WHERE resolution = \(resolution.rawValue)
                  AND bucket_ms < \(cutoffs.rollupsBeforeMs(resolution)) LIMIT 1
                """
            )
            if !old.isEmpty { return true }
        }
        return false
    }
}
