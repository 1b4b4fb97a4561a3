import EcoWattStorage
import Foundation
import GRDB

/// Disk usage of the database per table (issue 17): what each table and its indexes take, from SQLite's `dbstat`
/// virtual table, and the files on disk.
public struct DatabaseStatistics: Sendable, Equatable {
    public struct Table: Sendable, Equatable {
        public let name: String
        /// Bytes of the table's pages and its indexes' pages.
        public let bytes: Int64
        /// Rows (only when counted: `ecowatt db stats`, not the periodic metric).
        public let rows: Int?
    }

    /// Packets and samples stored as telemetry (only when rows are counted: every chunk is decoded).
    public struct Telemetry: Sendable, Equatable {
        public let packets: Int
        public let samples: Int
        /// Everything stored for them: the chunks and the serial references, with their indexes.
        public let bytes: Int64
        /// The per-minute and per-hour rollups, with their indexes (reported apart).
        public let rollupBytes: Int64
    }

    public let tables: [Table]
    public let telemetry: Telemetry?
    /// The database file, its WAL and its shared-memory file, in bytes.
    public let files: [String: Int64]

    /// Reads the statistics through `reader`. `countRows` also counts every table's rows (a full scan of each).
    static func read(_ db: Database, path: String, countRows: Bool) throws -> DatabaseStatistics {
        let sizes = try Row.fetchAll(
            db,
            sql: """
                SELECT COALESCE(m.tbl_name, s.name) AS owner, SUM(s.pgsize) AS bytes
                FROM dbstat AS s LEFT JOIN sqlite_schema AS m ON m.name = s.name
                GROUP BY owner ORDER BY bytes DESC
                """
        )
        var tables: [Table] = []
        for row in sizes {
            let name: String = row["owner"]
            var rows: Int?
            if countRows, try db.tableExists(name) {
                rows = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(name.quotedDatabaseIdentifier)")
            }
            tables.append(Table(name: name, bytes: row["bytes"], rows: rows))
        }
        var files: [String: Int64] = [:]
        for suffix in ["", "-wal", "-shm"] {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path + suffix)
            if let size = attributes?[.size] as? Int64 { files[(path as NSString).lastPathComponent + suffix] = size }
        }
        var telemetry: Telemetry?
        if countRows, try db.tableExists("telemetry_chunks") {
            var packets = 0
            var samples = 0
            let bodies = try Data.fetchCursor(db, sql: "SELECT body FROM telemetry_chunks")
            while let body = try bodies.next() {
                guard let chunk = try? TelemetryChunk(decoding: [UInt8](body)) else { continue }
                packets += chunk.packets.count
                samples += chunk.packets.reduce(0) { $0 + ($1.samples?.count ?? 0) }
            }
            let bytes = { (names: [String]) in tables.filter { names.contains($0.name) }.reduce(Int64(0)) { $0 + $1.bytes } }
            telemetry = Telemetry(
                packets: packets,
                samples: samples,
                bytes: bytes(["telemetry_chunks", "telemetry_refs"]),
                rollupBytes: bytes(["telemetry_rollups"])
            )
        }
        return DatabaseStatistics(tables: tables, telemetry: telemetry, files: files)
    }
}

extension EcoWattDatabase {
    /// Per-table disk usage (a read of every page: seconds on a database of gigabytes; call it rarely).
    public func statistics(countRows: Bool = false) async throws -> DatabaseStatistics {
        let path = self.path
        return try await pool.read { db in try DatabaseStatistics.read(db, path: path, countRows: countRows) }
    }

    /// The same for a database file the caller does not serve (`ecowatt db stats`), opened read-only.
    public static func statistics(path: String, countRows: Bool) throws -> DatabaseStatistics {
        guard FileManager.default.fileExists(atPath: path) else { throw DatabaseBackup.Failure.noDatabase(path) }
        let reader = try EcoWattDatabase.readOnly(path)
        defer { try? reader.close() }
        return try reader.read { db in try DatabaseStatistics.read(db, path: path, countRows: countRows) }
    }
}
