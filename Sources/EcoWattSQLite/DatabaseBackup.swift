import EcoWattProtocol
import EcoWattStorage
import Foundation
import GRDB

/// Consistent copies of a (possibly running) server's database, and putting one back (issue 17).
public enum DatabaseBackup {
    public enum Failure: Error, CustomStringConvertible {
        case noDatabase(String)
        case exists(String)
        case notADatabase(String, String)
        case newerSchema(String, String)

        public var description: String {
            switch self {
            case .noDatabase(let path): "no database at \(path)"
            case .exists(let path): "\(path) exists; choose another file (a backup never overwrites)"
            case .notADatabase(let path, let reason): "\(path) is not a usable EcoWatt database: \(reason)"
            case .newerSchema(let path, let migration):
                "\(path) was written by a newer server (migration \(migration)); restore it with that version"
            }
        }
    }

    /// What a finished backup holds.
    public struct Summary: Sendable {
        public let bytes: Int64
        public let devices: Int
        public let packets: Int
        public let lastMigration: String
    }

    /// Copies the database at `source` into a new file `destination` with SQLite's online backup API, through a
    /// read-only connection: the copy is one consistent snapshot (a single step under one read transaction; WAL
    /// readers never block the server's writer), checked with `PRAGMA integrity_check`, and written 0600.
    /// - Parameter progress: called with (pages copied, total pages) as the copy advances.
    public static func backup(
        source: String,
        destination: String,
        progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Summary {
        guard FileManager.default.fileExists(atPath: source) else { throw Failure.noDatabase(source) }
        guard !FileManager.default.fileExists(atPath: destination) else { throw Failure.exists(destination) }
        let reader = try EcoWattDatabase.readOnly(source)
        let partial = destination + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        do {
            let copy = try DatabaseQueue(path: partial)
            try reader.backup(to: copy) { step in
                progress?(step.completedPageCount, step.totalPageCount)
            }
            // A self-contained file: no WAL beside it.
            try copy.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = DELETE") }
            try copy.close()
            try reader.close()
            chmod(partial, 0o600)
            let summary = try inspect(partial)
            try FileManager.default.moveItem(atPath: partial, toPath: destination)
            return summary
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// Checks that `path` is an intact EcoWatt database this server can open, and counts what it holds.
    public static func inspect(_ path: String) throws -> Summary {
        guard FileManager.default.fileExists(atPath: path) else { throw Failure.noDatabase(path) }
        let queue: DatabaseQueue
        do {
            queue = try EcoWattDatabase.readOnly(path)
        } catch {
            throw Failure.notADatabase(path, "\(error)")
        }
        defer { try? queue.close() }
        return try queue.read { db in
            let check = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            guard check == ["ok"] else { throw Failure.notADatabase(path, check.prefix(3).joined(separator: "; ")) }
            guard try db.tableExists("grdb_migrations"), try db.tableExists("devices"),
                try db.tableExists("packets") || db.tableExists("telemetry_chunks")
            else {
                throw Failure.notADatabase(path, "no EcoWatt schema")
            }
            let applied = Set(try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations"))
            let known = Set(EcoWattDatabase.migrator.migrations)
            if let unknown = applied.subtracting(known).sorted().first { throw Failure.newerSchema(path, unknown) }
            let last = EcoWattDatabase.migrator.migrations.last { applied.contains($0) } ?? "none"
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0
            return Summary(
                bytes: size,
                devices: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM devices") ?? 0,
                packets: try storedPackets(db),
                lastMigration: last
            )
        }
    }

    /// Packets stored (schema v12 on: counted from each chunk's header; before: the packet rows).
    static func storedPackets(_ db: Database) throws -> Int {
        guard try db.tableExists("telemetry_chunks") else { return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM packets") ?? 0 }
        var count = 0
        let bodies = try Data.fetchCursor(db, sql: "SELECT body FROM telemetry_chunks")
        while let body = try bodies.next() { count += (try? TelemetryChunk.packetCount(encoded: [UInt8](body))) ?? 0 }
        return count
    }

    /// Replaces the database at `target` with the backup at `source`. The caller holds the data directory's lock (no
    /// server runs). The current database, with its WAL, is kept beside it as `<name>.before-restore-<time>` (never
    /// deleted); the next server start migrates the restored file if it is older.
    /// - Returns: the path the previous database was moved to, or `nil` when there was none.
    public static func restore(source: String, target: String, now: Date = Date()) throws -> (Summary, String?) {
        let summary = try inspect(source)
        let manager = FileManager.default
        var kept: String?
        if manager.fileExists(atPath: target) {
            // Fold the WAL into the file first, so the kept copy is one file.
            let current = try DatabaseQueue(path: target)
            _ = try current.writeWithoutTransaction { try $0.checkpoint(.truncate) }
            try current.close()
            let aside = "\(target).before-restore-\(EpochTime.compactStamp(now))"
            try manager.moveItem(atPath: target, toPath: aside)
            kept = aside
        }
        for suffix in ["-wal", "-shm"] { try? manager.removeItem(atPath: target + suffix) }
        let partial = target + ".restoring"
        try? manager.removeItem(atPath: partial)
        try manager.copyItem(atPath: source, toPath: partial)
        chmod(partial, 0o600)
        try manager.moveItem(atPath: partial, toPath: target)
        return (summary, kept)
    }
}
