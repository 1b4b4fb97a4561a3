import ArgumentParser
import EcoWattSQLite
import EcoWattServer
import EcoWattStorage
import Foundation

/// `ecowatt db …`: consistent backups of a running server's database, and restoring one.
struct DatabaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Back up and restore the SQLite database.",
        subcommands: [Backup.self, Restore.self, Stats.self]
    )

    static func databasePath(_ dataDir: String?) -> (directory: String, file: String) {
        let directory = dataDir ?? ProcessInfo.processInfo.environment["ECOWATT_DATA_DIR"] ?? "./data"
        return (directory, EcoWattDatabase.path(inDirectory: directory))
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the database into FILE, consistently, while the server runs (SQLite's online backup API).",
            discussion: """
                The copy is one snapshot taken under a read transaction: the server keeps accepting uploads meanwhile
                (WAL readers never block its writer), and what the copy holds is exactly what was committed when it
                began. The file is checked (PRAGMA integrity_check) and written 0600; an existing FILE is never
                overwritten.
                """
        )
        @Argument(help: "The backup file to create.") var file: String
        @Option(help: "Data directory (env ECOWATT_DATA_DIR, default ./data).") var dataDir: String?

        func run() throws {
            let source = DatabaseCommand.databasePath(dataDir).file
            let started = Date()
            let summary = try DatabaseBackup.backup(source: source, destination: file) { done, total in
                guard total > 0 else { return }
                FileHandle.standardError.write(Data("\rcopying \(source): \(done * 100 / total)% of \(total) pages".utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            print(
                "backed up \(source) to \(file): \(summary.bytes) bytes, \(summary.devices) devices, \(summary.packets) packets, "
                    + "schema \(summary.lastMigration), \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
            )
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace the database with the backup FILE (the server must be stopped).",
            discussion: """
                Checks FILE first (integrity, schema, not from a newer server), then moves the current database aside
                as ecowatt.sqlite.before-restore-<time> (never deleted) and puts the copy in its place. Refused while a
                server runs on the data directory. Nonces come back as they were at the backup: devices that uploaded
                since then are ahead, which the nonce check accepts; commands, sessions and readings after the backup
                are gone.
                """
        )
        @Argument(help: "The backup file.") var file: String
        @Option(help: "Data directory (env ECOWATT_DATA_DIR, default ./data).") var dataDir: String?

        func run() throws {
            let (directory, target) = DatabaseCommand.databasePath(dataDir)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let lock: DataDirectoryLock
            do {
                lock = try DataDirectoryLock(directory: directory)
            } catch {
                throw ValidationError("\(error); stop the server before restoring")
            }
            defer { lock.release() }
            let (summary, kept) = try DatabaseBackup.restore(source: file, target: target)
            if let kept { print("kept the previous database as \(kept)") }
            print(
                "restored \(file) to \(target): \(summary.devices) devices, \(summary.packets) packets, schema \(summary.lastMigration)"
            )
        }
    }
}

extension DatabaseCommand {
    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disk usage and rows per table (tables with their indexes), read-only beside a running server."
        )
        @Option(help: "Data directory (env ECOWATT_DATA_DIR, default ./data).") var dataDir: String?

        func run() throws {
            let path = DatabaseCommand.databasePath(dataDir).file
            let statistics = try EcoWattDatabase.statistics(path: path, countRows: true)
            let total = statistics.tables.reduce(0) { $0 + $1.bytes }
            print("table".padding(toLength: 28, withPad: " ", startingAt: 0) + "      bytes        rows  bytes/row")
            for table in statistics.tables {
                let rows = table.rows.map { String($0) } ?? "-"
                let perRow = table.rows.flatMap { $0 > 0 ? String(format: "%.1f", Double(table.bytes) / Double($0)) : nil } ?? "-"
                print(
                    table.name.padding(toLength: 28, withPad: " ", startingAt: 0)
                        + String(repeating: " ", count: max(0, 11 - String(table.bytes).count)) + String(table.bytes)
                        + String(repeating: " ", count: max(0, 12 - rows.count)) + rows
                        + String(repeating: " ", count: max(0, 11 - perRow.count)) + perRow
                )
            }
            print("total in pages: \(total) bytes")
            if let telemetry = statistics.telemetry {
                let perSample = telemetry.samples > 0 ? String(format: "%.1f", Double(telemetry.bytes) / Double(telemetry.samples)) : "-"
                print(
                    "telemetry: \(telemetry.packets) packets, \(telemetry.samples) samples, \(telemetry.bytes) bytes "
                        + "(\(perSample) bytes per sample); rollups \(telemetry.rollupBytes) bytes"
                )
            }
            for (file, bytes) in statistics.files.sorted(by: { $0.key < $1.key }) { print("file \(file): \(bytes) bytes") }
        }
    }
}
