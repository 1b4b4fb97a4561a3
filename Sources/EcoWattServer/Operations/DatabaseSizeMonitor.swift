import EcoWattSQLite
import EcoWattStorage
import Logging
import ServiceLifecycle
import Synchronization

/// The monitor's latest measurement, for the dashboard's System page.
public final class DatabaseSizeReading: Sendable {
    public struct Reading: Sendable, Equatable {
        public var files: [String: Int64]
        public var tables: [String: Int64]
        public var measuredAtMs: Int64
    }

    private let latest = Mutex<Reading?>(nil)

    public init() {}

    public var reading: Reading? { latest.withLock { $0 } }

    func set(_ reading: Reading) { latest.withLock { $0 = reading } }
}

/// Publishes the database's disk usage per table as gauges (`ecowatt_database_bytes{table}`, and the files as
/// `ecowatt_database_file_bytes{file}`): at start, then every `interval` — or less often on a large database.
///
/// Not per scrape: `dbstat` reads every page (50 ms for a 38 MB database here warm, 220 ms cold; seconds for gigabytes). The
/// next measurement waits at least 200 times as long as the last one took, so the monitor never spends more than
/// 0.5 % of the time (and of the disk's reads) on it.
struct DatabaseSizeMonitor: Service {
    let database: EcoWattDatabase
    let metrics: ServerMetrics
    let logger: Logger
    let reading: DatabaseSizeReading
    let now: @Sendable () -> Int64
    var interval: Duration = .seconds(300)

    func run() async throws {
        await repeatUntilShutdown { await measure() }
    }

    /// Measures once; returns how long to wait before the next measurement.
    func measure() async -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let statistics = try await database.statistics()
            for table in statistics.tables { metrics.set("ecowatt_database_bytes", Double(table.bytes), [("table", table.name)]) }
            for (file, bytes) in statistics.files { metrics.set("ecowatt_database_file_bytes", Double(bytes), [("file", file)]) }
            reading.set(
                .init(
                    files: statistics.files,
                    tables: Dictionary(statistics.tables.map { ($0.name, $0.bytes) }) { first, _ in first },
                    measuredAtMs: now()
                )
            )
        } catch  where error.isShutdown {
        } catch {
            logger.warning("database size not measured", metadata: ["error": "\(error.logDescription)"])
        }
        let took = clock.now - start
        if took > .seconds(1) { logger.info("database size measured", metadata: ["duration": "\(took)"]) }
        return max(interval, took * 200)
    }
}
