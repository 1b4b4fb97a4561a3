import Crypto
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import FirmwareImage
import Foundation
import Hummingbird
import Logging
import MQTTBridge

/// The assembled server: the Hummingbird application and the parts tests and the CLI need to reach.
public struct EcoWattApplication: Sendable {
    public typealias App = Application<RouterResponder<EcoWattRequestContext>>

    public let application: App
    public let configuration: ServerConfiguration
    public let database: EcoWattDatabase
    public let writer: GroupCommitWriter
    public let store: SQLiteTelemetryStore
    public let ingest: IngestService
    public let devices: SQLiteDeviceStore
    public let activity: DeviceActivity
    public let commands: CommandService
    public let ota: OTAService
    public let metrics: ServerMetrics
    public let faults: FaultInjector
    public let diagnostics: DiagnosticsService
    public let feed: MQTTPublisher
    public let boot: BootMessages
    public let fleetKey: FleetKeyNotice
    public let operatorToken: String
    /// The data directory's lock, held while the application lives.
    public let lock: DataDirectoryLock

    /// Epoch milliseconds now: the arrival time stamped on uploads.
    public static let systemClock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Opens the database, loads or creates the operator token, and builds the router.
    /// - Parameter clock: arrival time of uploads in epoch ms (tests replaying captures inject the capture time).
    public init(
        configuration: ServerConfiguration,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64 = systemClock
    ) async throws {
        // Files private to the server's user; then one server per data directory, before anything opens a file there.
        PrivateFiles.restrictNewFiles()
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let lock = try DataDirectoryLock(directory: configuration.dataDirectory)
        for directory in [configuration.firmwareDirectory, configuration.diagnosticsDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        PrivateFiles.tighten(
            [configuration.dataDirectory, configuration.keysDirectory, configuration.diagnosticsDirectory],
            logger: logger
        )
        let database = try EcoWattDatabase(path: configuration.databasePath, durability: configuration.durability)
        try database.recountPendingDevices()
        let writer = GroupCommitWriter(database: database, logger: logger)
        let store = SQLiteTelemetryStore(database: database, writer: writer)
        guard let fleetKey = HexCoding.decode(configuration.fleetKeyHex) else {
            throw ConfigurationError.invalid("fleet_key is not hex")
        }
        let fleetKeyNotice = FleetKeyNotice(keyHex: configuration.fleetKeyHex)
        try fleetKeyNotice.announce(database: database, logger: logger)
        let metrics = ServerMetrics()
        let faults = FaultInjector(enabled: configuration.faultInjection)
        if faults.enabled { logger.warning("fault injection is enabled: operators can make device routes fail") }
        let limits = configuration.limits
        let logInterval = Duration.seconds(limits.clientErrorLogIntervalSeconds)
        let clientErrors = RateLimitedLog(logger: logger, what: "client errors", interval: logInterval, burst: limits.clientErrorLogBurst)
        let deviceEvents = RateLimitedLog(logger: logger, what: "device events", interval: logInterval, burst: limits.clientErrorLogBurst)
        let diagnostics = DiagnosticsService(
            directory: configuration.diagnosticsDirectory,
            maxFileBytes: configuration.diagnosticsMaxFileBytes,
            retainedFiles: configuration.diagnosticsRetainedFiles,
            totalBytes: limits.diagnosticsTotalBytes
        )
        let feed = try await MQTTPublisher(configuration: configuration.mqtt, store: store, logger: logger, waitForListener: true)
        let ingest = IngestService(
            store: store,
            fleetKey: SymmetricKey(data: fleetKey),
            logger: logger,
            metrics: metrics,
            feed: feed,
            cacheLimit: limits.ingestCacheDevices,
            nonceJumpAllowance: UInt64(limits.nonceJumpAllowance)
        )
        let registryEvents = RegistryEvents()
        let devices = SQLiteDeviceStore(database: database, writer: writer, retention: limits.retention, events: registryEvents)
        let activity = try await DeviceActivity(store: devices, logger: logger, metrics: metrics)
        let commands = try await CommandService(
            store: devices,
            resultTimeoutSeconds: configuration.commandResultTimeoutSeconds,
            maxPending: configuration.maxPendingCommands,
            logger: logger,
            clock: clock
        )
        let keyRing = FirmwareKeyRing(directory: configuration.keysDirectory, logger: logger)
        let ota = try await OTAService(
            store: devices,
            catalog: FirmwareCatalog(directory: FirmwareDirectory(path: configuration.firmwareDirectory), keyRing: keyRing),
            logger: logger,
            clock: clock,
            metrics: metrics,
            faults: faults,
            deviceEvents: deviceEvents,
            maxActiveSessions: limits.maxActiveOTASessions,
            idleLimitSeconds: limits.otaSessionIdleSeconds
        )
        // Unsigned device requests are honoured from the address of the device's verified uploads (issue 14).
        let binding = DeviceBinding(
            policy: configuration.deviceBinding,
            windowSeconds: limits.bindingWindowSeconds,
            bindings: try await devices.bindings()
        )
        let access = DeviceAccess(
            binding: binding,
            addresses: ClientAddressResolver(trustedProxies: configuration.trustedProxies, header: configuration.forwardedHeader),
            activity: activity,
            clock: clock
        )
        let boot = try await BootMessages(
            binding: binding,
            store: devices,
            registry: devices,
            ota: ota,
            ingest: ingest,
            windowSeconds: limits.holdWindowSeconds,
            caps: limits.retention.heldMessages,
            metrics: metrics,
            logger: logger
        )
        let deviceRoutes = DeviceRoutes(
            store: devices,
            activity: activity,
            ingest: ingest,
            boot: boot,
            access: access,
            offlineAfterMs: Int64(configuration.deviceOfflineAfterSeconds) * 1000,
            clock: clock
        )
        let commandRoutes = CommandRoutes(commands: commands, access: access, clock: clock)
        let configRoutes = ConfigRoutes(store: devices, ingest: ingest, boot: boot, access: access, clock: clock)
        let reportRoutes = ReportRoutes(store: devices, access: access, clock: clock)
        let diagnosticsRoutes = DiagnosticsRoutes(
            diagnostics: diagnostics,
            registry: devices,
            access: access,
            clock: clock
        )
        // Ids that device requests give a registry row are tracked from then on; pending ids the caps drop leave
        // memory and disk with their rows.
        registryEvents.observe { event in
            switch event {
            case .admitted(let ids):
                for id in ids { activity.admit(id, at: clock()) }
            case .evicted(let ids):
                activity.forget(ids)
                binding.forget(ids)
                ota.evicted(ids)
                Task { await diagnostics.evicted(ids) }
                metrics.increment("ecowatt_pending_devices_evicted_total", by: ids.count)
            }
        }
        let offlineAfterMs = Int64(configuration.deviceOfflineAfterSeconds) * 1000
        metrics.sample("ecowatt_devices_online") { Double(activity.activeCount(sinceMs: clock() - offlineAfterMs)) }
        metrics.sample("ecowatt_ota_active_sessions") { Double(ota.activeSessionCount) }
        metrics.sample("ecowatt_mqtt_backlog") { Double(feed.status.backlog) }
        metrics.sample("ecowatt_mqtt_connected") { feed.status.connected ? 1 : 0 }
        metrics.sample("ecowatt_devices_known") { Double(activity.counts.known) }
        metrics.sample("ecowatt_devices_bound") { Double(binding.boundCount(nowMs: clock())) }
        metrics.set("ecowatt_fleet_key_public", fleetKeyNotice.isPublic ? 1 : 0)
        let otaRoutes = OTARoutes(
            ota: ota,
            boot: boot,
            access: access,
            maxFirmwareBytes: configuration.maxFirmwareBytes
        )
        let (token, created) = try OperatorToken.loadOrCreate(path: configuration.operatorTokenPath)
        if created {
            logger.notice(
                "generated operator API token",
                metadata: ["path": "\(configuration.operatorTokenPath)"]
            )
        } else {
            logger.info("operator API token loaded", metadata: ["path": "\(configuration.operatorTokenPath)"])
        }

        let listeners = try Listeners(configuration: configuration, logger: logger)
        let health = HealthRoutes(writer: writer, ota: ota, fleetKey: fleetKeyNotice, feed: feed)
        let router = listeners.makeRouter(metrics: metrics, clientErrors: clientErrors, health: health, tls: !listeners.separateOperator)
        // Device routes: no authentication (the firmware sends none); uploads carry their own HMAC envelope.
        // Injected network faults apply to these routes only.
        let deviceRouter = router.group()
        if faults.enabled { deviceRouter.add(middleware: FaultInjectionMiddleware(faults: faults)) }
        TelemetryRoutes(
            ingest: ingest,
            activity: activity,
            boot: boot,
            access: access,
            maxBodyBytes: configuration.maxBodyBytes,
            clock: clock
        )
        .register(on: deviceRouter)
        deviceRoutes.registerDeviceRoutes(on: deviceRouter)
        commandRoutes.registerDeviceRoutes(on: deviceRouter)
        configRoutes.registerDeviceRoutes(on: deviceRouter)
        reportRoutes.registerDeviceRoutes(on: deviceRouter)
        otaRoutes.registerDeviceRoutes(on: deviceRouter)
        diagnosticsRoutes.registerDeviceRoutes(on: deviceRouter)
        // Operator routes: bearer token; on their own listener when `operator_port` is set.
        let operatorRouter =
            listeners.separateOperator
            ? listeners.makeRouter(metrics: metrics, clientErrors: clientErrors, health: health, tls: true) : router
        let operatorRoutes = operatorRouter.group().add(middleware: OperatorAuthMiddleware(token: token))
        QueryRoutes(store: store).register(on: operatorRoutes)
        SecurityRoutes(ingest: ingest).register(on: operatorRoutes)
        deviceRoutes.registerOperatorRoutes(on: operatorRoutes)
        commandRoutes.registerOperatorRoutes(on: operatorRoutes)
        configRoutes.registerOperatorRoutes(on: operatorRoutes)
        reportRoutes.registerOperatorRoutes(on: operatorRoutes)
        otaRoutes.registerOperatorRoutes(on: operatorRoutes)
        StatsRoutes(ingest: ingest, commands: commands, ota: ota, metrics: metrics, registry: devices, diagnostics: diagnostics)
            .register(on: operatorRoutes)
        diagnosticsRoutes.registerOperatorRoutes(on: operatorRoutes)
        FaultRoutes(faults: faults, ingest: ingest, clock: clock).register(on: operatorRoutes)
        MQTTRoutes(feed: feed).register(on: operatorRoutes)

        var application = try listeners.deviceApplication(
            router: router,
            metrics: metrics,
            // The MQTT client connects once the device port is bound (a server that cannot bind never connects).
            onListening: { feed.listenerReady() }
        )
        // Shutdown runs in reverse: the HTTP server drains first, then the operator listener (added last), then the
        // services (activity flushes last_seen), and the writer, added before them, commits what is queued last.
        application.addServices(
            WALCheckpointer(database: database, logger: logger),
            writer,
            ingest,
            activity,
            commands,
            ota,
            feed,
            clientErrors,
            deviceEvents,
            boot,
            DatabaseSizeMonitor(database: database, metrics: metrics, logger: logger),
            HangupReloader(
                logger: logger,
                actions: [{ keyRing.reload(logger: logger) }, { listeners.tls?.reload(logger: logger) }]
            )
        )
        if listeners.separateOperator {
            application.addServices(try listeners.operatorApplication(router: operatorRouter, metrics: metrics))
        }

        self.application = application
        self.configuration = configuration
        self.database = database
        self.writer = writer
        self.store = store
        self.ingest = ingest
        self.devices = devices
        self.activity = activity
        self.commands = commands
        self.ota = ota
        self.metrics = metrics
        self.faults = faults
        self.diagnostics = diagnostics
        self.feed = feed
        self.boot = boot
        self.fleetKey = fleetKeyNotice
        self.operatorToken = token
        self.lock = lock
    }
}
