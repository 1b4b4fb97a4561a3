import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// Which devices' rollups are out of date: the device row keeps the time range its uploads changed since the last
/// refresh (`rollup_from_ms`…`rollup_to_ms`, set in the upload's own transaction, so nothing committed is missed), and
/// the latest sample time retention dropped (`rollup_floor_ms`: buckets up to it are never recomputed, their raw
/// samples are gone).
enum RollupLedger {
    static func markChanged(_ db: Database, device: String, times: [Int64]) throws {
        guard let low = times.min(), let high = times.max() else { return }
        try db.cachedStatement(
            sql: """
                UPDATE devices SET rollup_from_ms = min(coalesce(rollup_from_ms, ?2), ?2),
                  rollup_to_ms = max(coalesce(rollup_to_ms, ?3), ?3) WHERE device_id = ?1
                """
        ).execute(arguments: [device, low, high])
    }
}

/// One device's share of a rollup refresh: the range recomputed (up to `end`, what is left for the next refresh) and
/// its buckets, read in one snapshot with the device's upload count.
typealias RollupWork = (
    device: String, uploads: Int64, from: Int64, to: Int64, end: Int64, buckets: [RollupResolution: [Int64: TelemetryRollup]]
)

extension SQLiteTelemetryStore {
    public func rollups(
        deviceID: String,
        resolution: RollupResolution,
        fromMs: Int64,
        toMs: Int64,
        limit: Int
    ) async throws -> [TelemetryRollup] {
        try await database.pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT bucket_ms, stats FROM telemetry_rollups WHERE device_id = ? AND resolution = ?
                          AND bucket_ms BETWEEN ? AND ? ORDER BY bucket_ms LIMIT ?
                        """
                ),
                arguments: [deviceID, resolution.rawValue, resolution.bucket(of: fromMs), toMs, limit]
            ).map { row in try TelemetryRollup(bucketMs: row["bucket_ms"], decodingStatistics: [UInt8](row["stats"] as Data)) }
        }
    }

    public func refreshRollups(limit: Int) async throws -> Int {
        // Read the marks and the chunks in one snapshot, write the buckets in the writer only if no upload of the device
        // committed since the snapshot (its upload count is unchanged): else the next refresh recomputes the range with
        // that upload in it, and a refresh that read earlier never overwrites one that read later.
        let work = try await database.pool.read { db -> [RollupWork] in
            let marks = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT device_id, upload_count, rollup_from_ms, rollup_to_ms, rollup_floor_ms FROM devices
                        WHERE rollup_from_ms IS NOT NULL LIMIT ?
                        """
                ),
                arguments: [limit]
            )
            return try marks.map { mark in
                let device: String = mark["device_id"]
                let plan = RollupRefreshRange(changedFrom: mark["rollup_from_ms"], changedTo: mark["rollup_to_ms"], floorMs: mark["rollup_floor_ms"])
                let (from, to, end) = plan.map { ($0.from, $0.to, $0.end) } ?? (1, 0, 0)
                let samples =
                    from <= to
                    ? try TelemetryChunks.samples(db, device: device, fromMs: from, toMs: to, limit: .max)
                        .map { (time: $0.timestampMs, layout: $0.registerLayout, values: $0.rawValues) } : []
                var buckets: [RollupResolution: [Int64: TelemetryRollup]] = [:]
                for resolution in RollupResolution.allCases { buckets[resolution] = TelemetryRollup.aggregate(samples, resolution: resolution) }
                return (device, mark["upload_count"], from, to, end, buckets)
            }
        }
        guard !work.isEmpty else { return 0 }
        try await writer.write { db in
            let clear = try db.cachedStatement(
                sql: "DELETE FROM telemetry_rollups WHERE device_id = ? AND resolution = ? AND bucket_ms BETWEEN ? AND ?"
            )
            let insert = try db.cachedStatement(
                sql: "INSERT INTO telemetry_rollups (device_id, resolution, bucket_ms, stats) VALUES (?, ?, ?, ?)"
            )
            let done = try db.cachedStatement(
                sql: "UPDATE devices SET rollup_from_ms = NULL, rollup_to_ms = NULL WHERE device_id = ? AND upload_count = ?"
            )
            let advance = try db.cachedStatement(sql: "UPDATE devices SET rollup_from_ms = ? WHERE device_id = ? AND upload_count = ?")
            let count = try db.cachedStatement(sql: "SELECT upload_count FROM devices WHERE device_id = ?")
            for item in work {
                guard try Int64.fetchOne(count, arguments: [item.device]) == item.uploads else { continue }
                if item.from <= item.to {
                    for (resolution, buckets) in item.buckets {
                        try clear.execute(arguments: [item.device, resolution.rawValue, item.from, item.to])
                        for rollup in buckets.values {
                            try insert.execute(arguments: [item.device, resolution.rawValue, rollup.bucketMs, Data(rollup.encodedStatistics())])
                        }
                    }
                }
                if item.to < item.end {
                    try advance.execute(arguments: [item.to &+ 1, item.device, item.uploads])
                } else {
                    try done.execute(arguments: [item.device, item.uploads])
                }
            }
        }
        return work.count
    }

    public func pruneTelemetry(_ cutoffs: TelemetryCutoffs, limit: Int) async throws -> Int {
        // A read first: the job runs every 30 s, and with nothing past retention it must not cost a write transaction.
        guard try await database.pool.read({ db in try Self.anythingToPrune(db, cutoffs) }) else { return 0 }
        return try await writer.write { db in
            var dropped = 0
            // Chunks in id order are in arrival order: drop from the oldest while they arrived before the cutoff.
            let oldest = try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT id, device_id, last_ms, body FROM telemetry_chunks ORDER BY id LIMIT ?"
                ),
                arguments: [limit]
            )
            var floors: [String: Int64] = [:]
            for row in oldest {
                let body: Data = row["body"]
                guard cutoffs.dropsChunk([UInt8](body)) else { break }
                let id: Int64 = row["id"]
                try db.cachedStatement(sql: "DELETE FROM telemetry_chunks WHERE id = ?").execute(arguments: [id])
                try db.cachedStatement(sql: "DELETE FROM telemetry_refs WHERE packet_id BETWEEN ? AND ?")
                    .execute(arguments: [ChunkReading.packetID(chunk: id, place: 0), ChunkReading.packetID(chunk: id, place: 255)])
                floors[row["device_id"], default: Int64.min] = max(floors[row["device_id"], default: Int64.min], row["last_ms"])
                dropped += 1
            }
            for (device, floor) in floors {
                try db.cachedStatement(
                    sql: "UPDATE devices SET rollup_floor_ms = max(coalesce(rollup_floor_ms, ?2), ?2) WHERE device_id = ?1"
                ).execute(arguments: [device, floor])
            }
            for resolution in RollupResolution.allCases {
                let cutoff = cutoffs.rollupsBeforeMs(resolution)
                try db.cachedStatement(
                    sql: """
                        DELETE FROM telemetry_rollups WHERE rowid IN (SELECT rowid FROM telemetry_rollups
                          WHERE resolution = ? AND bucket_ms < ? LIMIT ?)
                        """
                ).execute(arguments: [resolution.rawValue, cutoff, limit])
                dropped += db.changesCount
            }
            return dropped
        }
    }

    /// Whether the oldest chunk arrived before the raw cutoff, or a rollup is older than its cutoff (both indexed).
    private static func anythingToPrune(_ db: Database, _ cutoffs: TelemetryCutoffs) throws -> Bool {
        if let body = try Data.fetchOne(db.cachedStatement(sql: "SELECT body FROM telemetry_chunks ORDER BY id LIMIT 1")),
            cutoffs.dropsChunk([UInt8](body))
        {
            return true
        }
        for resolution in RollupResolution.allCases {
            let cutoff = cutoffs.rollupsBeforeMs(resolution)
            let sql = "SELECT 1 FROM telemetry_rollups WHERE resolution = ? AND bucket_ms < ? LIMIT 1"
            if try Int.fetchOne(db, sql: sql, arguments: [resolution.rawValue, cutoff]) != nil { return true }
        }
        return false
    }
}
