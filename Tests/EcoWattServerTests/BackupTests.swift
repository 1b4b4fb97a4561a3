import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `ecowatt db backup` and `db restore` against the real binary: a consistent copy while uploads keep arriving, and a
/// restore that is refused while the server runs and brings back exactly what the backup held.
@Suite(.serialized) struct BackupTests {
    @Test func aBackupTakenUnderLoadRestoresExactlyWhatItHeld() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let dataDir = root.appendingPathComponent("data").path
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port, environment: ["ECOWATT_MQTT_ENABLED": "false"])
        let accepted = Mutex(0)
        let nonce = Mutex<UInt32>(11_001)
        let upload: @Sendable () async throws -> Void = {
            let next = nonce.withLock { value in
                defer { value += 1 }
                return value
            }
            if try await server.post("/aggregated/BACKUP-1", Uploads.body(device: "BACKUP-1", nonce: next)) == 200 {
                accepted.withLock { $0 += 1 }
            }
        }
        for _ in 0..<20 { try await upload() }
        // Uploads go on while the backup runs.
        let traffic = Task {
            while !Task.isCancelled { try? await upload() }
        }
        let backup = root.appendingPathComponent("backup.sqlite").path
        let (status, said, progress) = try await ServerProcess.runCLI(["db", "backup", backup, "--data-dir", dataDir])
        traffic.cancel()
        _ = await traffic.value
        #expect(status == 0, "\(progress)")
        #expect(said.contains("backed up") && progress.contains("copying"), "\(said) \(progress)")
        let copy = try DatabaseBackup.inspect(backup)
        #expect(copy.packets >= 20 && copy.devices == 1, "\(copy)")
        #expect(try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int == 0o600)
        let (again, _, exists) = try await ServerProcess.runCLI(["db", "backup", backup, "--data-dir", dataDir])
        #expect(again != 0 && exists.contains("never overwrites"))

        // More uploads after the backup; a restore is refused while the server runs.
        for _ in 0..<5 { try await upload() }
        let total = accepted.withLock { $0 }
        #expect(total > copy.packets)
        let (refused, _, running) = try await ServerProcess.runCLI(["db", "restore", backup, "--data-dir", dataDir])
        #expect(refused != 0 && running.contains("in use by pid") && running.contains("stop the server"), "\(running)")
        #expect(try await server.stop(signal: SIGTERM) == 0)

        // Stopped: the restore keeps the current database aside and brings back the backup's rows.
        let (restored, report, restoreError) = try await ServerProcess.runCLI(["db", "restore", backup, "--data-dir", dataDir])
        #expect(restored == 0, "\(restoreError)")
        #expect(report.contains("kept the previous database as"))
        let kept = try FileManager.default.contentsOfDirectory(atPath: dataDir).filter { $0.contains("before-restore") }
        #expect(kept.count == 1)
        // Everything acknowledged is in the kept database (an upload cut off by the cancelled traffic may be there too).
        #expect(try DatabaseBackup.inspect(dataDir + "/" + kept[0]).packets >= total)
        let second = try await ServerProcess(root: root, port: port, environment: ["ECOWATT_MQTT_ENABLED": "false"])
        #expect(try DatabaseBackup.inspect(dataDir + "/ecowatt.sqlite").packets == copy.packets)
        // The restored nonce state accepts the device's next uploads (its nonces only grew since the backup).
        #expect(try await second.post("/aggregated/BACKUP-1", Uploads.body(device: "BACKUP-1", nonce: nonce.withLock { $0 })) == 200)
        // Disk usage per table, read-only beside the running server: the restored rows are counted.
        let (statsStatus, stats, statsError) = try await ServerProcess.runCLI(["db", "stats", "--data-dir", dataDir])
        #expect(statsStatus == 0, "\(statsError)")
        let telemetryLine = stats.split(separator: "\n").first { $0.hasPrefix("telemetry: ") }.map(String.init) ?? ""
        #expect(telemetryLine.hasPrefix("telemetry: \(copy.packets + 1) packets, \(3 * (copy.packets + 1)) samples"), "\(stats)")
        #expect(stats.contains("file ecowatt.sqlite:") && stats.contains("bytes/row"), "\(stats)")
        #expect(try await second.stop(signal: SIGTERM) == 0)

        // Not a database: refused before anything is touched.
        let junk = root.appendingPathComponent("junk.sqlite").path
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: junk))
        let (junkStatus, _, junkError) = try await ServerProcess.runCLI(["db", "restore", junk, "--data-dir", dataDir])
        #expect(junkStatus != 0 && junkError.contains("not a usable EcoWatt database"), "\(junkError)")
    }
}
