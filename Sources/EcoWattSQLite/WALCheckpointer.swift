import EcoWattStorage
import GRDB
import Logging
import ServiceLifecycle

/// Keeps WAL checkpoints short for the writer.
///
/// SQLite's automatic checkpoint (every 1000 WAL pages) runs inside the `COMMIT` that crosses the threshold, so the
/// whole group of uploads waits for it; with `synchronous=FULL` and nothing else copying pages, that measured p99
/// 847 ms. This service runs a `PASSIVE` checkpoint on its own connection every `interval`, which never blocks the
/// writer or readers and copies most WAL pages ahead of time, so the automatic checkpoint (which also restarts the
/// WAL, keeping it near 4 MB) has little left to do. A passive checkpoint alone cannot restart a WAL that a busy
/// writer keeps appending to (the WAL grew to 739 MB in 15 s), which is why the automatic one stays on.
public final class WALCheckpointer: Service, Sendable {
    private let path: String
    private let interval: Duration
    private let logger: Logger

    public init(database: EcoWattDatabase, interval: Duration = .milliseconds(100), logger: Logger = Logger(label: "ecowatt.wal")) {
        self.path = database.path
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(1)
        let connection = try DatabaseQueue(path: path, configuration: configuration)
        await repeatUntilShutdown(every: interval) {
            do {
                try await connection.writeWithoutTransaction { db in
                    _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(PASSIVE)")
                }
            } catch {
                self.logger.debug("passive checkpoint skipped", metadata: ["error": "\(error.logDescription)"])
            }
        }
        try connection.close()
    }
}
