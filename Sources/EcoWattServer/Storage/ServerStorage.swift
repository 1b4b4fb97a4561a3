import EcoWattPostgres
import EcoWattSQLite
import EcoWattStorage
import FirmwareImage
import Logging
import ServiceLifecycle
import Synchronization

/// The stores of the configured backend (issue 22): SQLite in the data directory (the embedded default), or
/// PostgreSQL at `storage.database_url`, which several server instances can share. The services see only the store
/// protocols; this is the one place that knows which backend is behind them.
public struct ServerStorage: Sendable {
    public typealias DeviceStores = DeviceRegistryStore & CommandStore & ConfigStore & ReportStore & OTAStore & RolloutStore & BindingStore

    public enum Backend: Sendable {
        case sqlite(EcoWattDatabase, GroupCommitWriter)
        case postgres(EcoWattPostgresDatabase, PostgresWriter)
    }

    public let backend: Backend
    public let telemetry: any TelemetryStore & OutboxStore
    public let devices: any DeviceStores
    public let accounts: any AccountStore
    public let state: any ServerStateStore
    /// Prepared firmware images: `firmware_dir` on SQLite, a table on PostgreSQL (every instance serves every image).
    public let firmware: any FirmwareImageStore
    /// Diagnostics JSONL: files in `diagnostics_dir` on SQLite, rows on PostgreSQL.
    public let diagnostics: any DiagnosticsStore
    public let probe: any StorageProbe
    /// Changes other instances made (PostgreSQL); `nil` on SQLite, which one instance owns.
    public var feed: (any ChangeFeed)? { changeFeed }
    private let changeFeed: PostgresChangeFeed?
    /// PostgreSQL's connection pool, started by ``open(_:events:logger:)`` (start-up reads need it) and stopped last.
    private let pool: PostgresPool?

    /// Opens the configured backend: SQLite's file, or PostgreSQL's pool with its schema migrated.
    static func open(_ configuration: ServerConfiguration, events: RegistryEvents, logger: Logger) async throws -> ServerStorage {
        let retention = configuration.limits.retention
        let diagnosticsLimits = DiagnosticsLimits(
            maxFileBytes: configuration.diagnostics.maxFileBytes,
            retainedFiles: configuration.diagnostics.retainedFiles,
            totalBytes: configuration.limits.diagnosticsTotalBytes
        )
        guard let text = configuration.storage.databaseURL else {
            let database: EcoWattDatabase
            do {
                database = try EcoWattDatabase(path: configuration.storage.databasePath, durability: configuration.storage.durability)
                try database.recountPendingDevices()
            } catch let error as any StorageBackendError {
                // A full disk stops the start here: say which file, and what SQLite said.
                throw ConfigurationError.invalid(
                    "data_dir: the database \(configuration.storage.databasePath) cannot be opened and written: \(error.logDescription)"
                )
            }
            let writer = GroupCommitWriter(database: database, logger: logger)
            let devices = SQLiteDeviceStore(database: database, writer: writer, retention: retention, events: events)
            return ServerStorage(
                backend: .sqlite(database, writer),
                telemetry: SQLiteTelemetryStore(database: database, writer: writer, retention: retention, events: events),
                devices: devices,
                accounts: SQLiteAccountStore(database: database, writer: writer),
                state: database,
                firmware: FirmwareDirectory(path: configuration.ota.firmwareDirectory),
                diagnostics: DiagnosticsFiles(directory: configuration.diagnostics.directory, limits: diagnosticsLimits),
                probe: writer,
                changeFeed: nil,
                pool: nil
            )
        }
        let url: PostgresURL
        do {
            url = try PostgresURL(parsing: text)
        } catch {
            throw ConfigurationError.invalid("database_url: \(error)")
        }
        let database = EcoWattPostgresDatabase(url: url, maximumConnections: configuration.storage.databaseConnections, logger: logger)
        let pool = PostgresPool(database: database)
        do {
            let migrated = try await database.migrate()
            logger.notice("storage: PostgreSQL", metadata: ["database": "\(url)", "migrated": "\(migrated)"])
        } catch {
            await pool.stop()
            throw ConfigurationError.invalid("database_url \(url): \(error.logDescription)")
        }
        let writer = PostgresWriter(database: database)
        let feed = PostgresChangeFeed(database: database)
        let telemetry = PostgresTelemetryStore(database: database, writer: writer, retention: retention, events: events)
        pool.beforeStop = { telemetry.stopDraining() }
        return ServerStorage(
            backend: .postgres(database, writer),
            telemetry: telemetry,
            devices: PostgresDeviceStore(database: database, writer: writer, retention: retention, events: events),
            accounts: PostgresAccountStore(database: database),
            state: database,
            firmware: PostgresFirmwareImages(database: database),
            diagnostics: PostgresDiagnostics(database: database, limits: diagnosticsLimits),
            probe: writer,
            changeFeed: feed,
            pool: pool
        )
    }

    /// The services the stores need, in start order (they stop in reverse: the writer commits what is queued before
    /// the pool closes).
    var services: [any Service] {
        switch backend {
        case .sqlite(let database, let writer):
            return [WALCheckpointer(database: database, logger: Logger(label: "ecowatt.checkpoint")), writer]
        case .postgres(_, let writer):
            var services: [any Service] = []
            if let pool { services.append(pool) }
            if let changeFeed { services.append(changeFeed) }
            services.append(writer)
            return services
        }
    }

    /// Transactions and writes committed so far, and transactions that failed to commit.
    public var writeCounters: (batches: Int, jobs: Int, failed: Int) {
        switch backend {
        case .sqlite(_, let writer): writer.counters
        case .postgres(_, let writer): writer.counters
        }
    }

    /// Closes the SQLite file after the service group stopped (PostgreSQL's pool closed with the group).
    public func close() throws {
        try sqlite?.close()
    }

    /// Where the data is, for the start-up log: the SQLite file and its durability, or the PostgreSQL URL (never its
    /// password).
    public var location: String {
        switch backend {
        case .sqlite(let database, _): "\(database.path) (durability \(database.durability.rawValue))"
        case .postgres(let database, _): "\(database.url)"
        }
    }

    /// The SQLite database, on that backend (its file size, the CLI's tools, tests that look at rows).
    public var sqlite: EcoWattDatabase? {
        if case .sqlite(let database, _) = backend { return database }
        return nil
    }
}

/// PostgreSQL's connection pool as a service: it runs from the moment the storage opens (start-up reads need it), and
/// stops when the service group shuts down, after the services that use it.
final class PostgresPool: Service, Sendable {
    private let task: Task<Void, Never>
    private let hooks = Mutex<(@Sendable () -> Void)?>(nil)

    init(database: EcoWattPostgresDatabase) {
        task = Task { try? await database.run() }
    }

    /// Runs first when the pool stops (what holds a connection of its own lets go of it).
    var beforeStop: (@Sendable () -> Void)? {
        get { hooks.withLock { $0 } }
        set { hooks.withLock { $0 = newValue } }
    }

    func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }

    func stop() async {
        beforeStop?()
        task.cancel()
        await task.value
    }
}
