import EcoWattSQLite
import EcoWattStorage
import Logging
import ServiceLifecycle

/// Publishes the database's disk usage per table as gauges (`ecowatt_database_bytes{table}`, and the files as
/// `ecowatt_database_file_bytes{file}`): at start, then every `interval`. Not per scrape: `dbstat` reads every page.
struct DatabaseSizeMonitor: Service {
    let database: EcoWattDatabase
    let metrics: ServerMetrics
    let logger: Logger
    var interval: Duration = .seconds(300)

    func run() async throws {
        await measure()
        await repeatUntilShutdown(every: interval) { await measure() }
    }

    func measure() async {
        do {
            let statistics = try await database.statistics()
            for table in statistics.tables { metrics.set("ecowatt_database_bytes", Double(table.bytes), [("table", table.name)]) }
            for (file, bytes) in statistics.files { metrics.set("ecowatt_database_file_bytes", Double(bytes), [("file", file)]) }
        } catch {
            logger.warning("database size not measured", metadata: ["error": "\(error)"])
        }
    }
}
