import Crypto
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import FirmwareImage
import Foundation
import Hummingbird
import Logging
import MQTTBridge

/// The server's services, built once from the configuration (the composition root, as in Hummingbird's template:
/// ``build(configuration:logger:clock:)`` makes the services, ``EcoWattServices/buildRouters(listeners:)`` the routes,
/// ``EcoWattApplication`` the listeners around them).
public struct EcoWattServices: Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger
    let clock: @Sendable () -> Int64
    public let lock: DataDirectoryLock
    public let database: EcoWattDatabase
    public let writer: GroupCommitWriter
    public let store: SQLiteTelemetryStore
    public let devices: SQLiteDeviceStore
    public let metrics: ServerMetrics
    public let faults: FaultInjector
    let clientErrors: RateLimitedLog
    let deviceEvents: RateLimitedLog
    public let diagnostics: DiagnosticsService
    public let feed: MQTTPublisher
    public let ingest: IngestService
    public let activity: DeviceActivity
    public let commands: CommandService
    let keyRing: FirmwareKeyRing
    public let ota: OTAService
    let binding: DeviceBinding
    let access: DeviceAccess
    public let boot: BootMessages
    public let fleetKey: FleetKeyNotice
    /// The bootstrap token (`keys/operator_token`), empty once an admin revoked it.
    public let operatorToken: String
    public let accounts: AccountService
    public let credentials: DeviceCredentialService
    let hasher: PasswordHasher

    /// Takes the data directory, opens the database, loads what the services keep in memory, and wires them.
    /// - Parameter clock: arrival time of uploads in epoch ms (tests replaying captures inject the capture time).
    public static func build(
        configuration: ServerConfiguration,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64
    ) async throws -> EcoWattServices {
        // Files private to the server's user; then one server per data directory, before anything opens a file there.
        PrivateFiles.restrictNewFiles()
        try FileManager.default.createDirectory(atPath: configuration.storage.dataDirectory, withIntermediateDirectories: true)
        let lock = try DataDirectoryLock(directory: configuration.storage.dataDirectory)
        for directory in [configuration.ota.firmwareDirectory, configuration.diagnostics.directory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        PrivateFiles.tighten(
            [configuration.storage.dataDirectory, configuration.security.keysDirectory, configuration.diagnostics.directory],
            logger: logger
        )
        let database = try EcoWattDatabase(path: configuration.storage.databasePath, durability: configuration.storage.durability)
        try database.recountPendingDevices()
        let writer = GroupCommitWriter(database: database, logger: logger)
        let registryEvents = RegistryEvents()
        let store = SQLiteTelemetryStore(
            database: database,
            writer: writer,
            retention: configuration.limits.retention,
            events: registryEvents
        )
        guard let fleetKey = HexCoding.decode(configuration.security.fleetKeyHex) else {
            throw ConfigurationError.invalid("fleet_key is not hex")
        }
        let fleetKeyNotice = FleetKeyNotice(keyHex: configuration.security.fleetKeyHex)
        try fleetKeyNotice.announce(database: database, logger: logger)
        let metrics = ServerMetrics()
        let faults = FaultInjector(enabled: configuration.faultInjection)
        if faults.enabled { logger.warning("fault injection is enabled: operators can make device routes fail") }
        let limits = configuration.limits
        let logInterval = Duration.seconds(limits.clientErrorLogIntervalSeconds)
        let clientErrors = RateLimitedLog(logger: logger, what: "client errors", interval: logInterval, burst: limits.clientErrorLogBurst)
        let deviceEvents = RateLimitedLog(logger: logger, what: "device events", interval: logInterval, burst: limits.clientErrorLogBurst)
        let diagnostics = DiagnosticsService(
            directory: configuration.diagnostics.directory,
            maxFileBytes: configuration.diagnostics.maxFileBytes,
            retainedFiles: configuration.diagnostics.retainedFiles,
            totalBytes: limits.diagnosticsTotalBytes
        )
        // Accounts and the audit trail (issue 19) come first: key rotations by uploads are audited.
        let accountStore = SQLiteAccountStore(database: database, writer: writer)
        let audit = AuditTrail(
            store: accountStore,
            headPath: configuration.storage.auditHeadPath(configuration.accounts),
            logger: logger
        )
        let feed = try await MQTTPublisher(configuration: configuration.mqtt, store: store, logger: logger, waitForListener: true)
        let ingest = IngestService(
            store: store,
            fleetKey: SymmetricKey(data: fleetKey),
            logger: logger,
            metrics: metrics,
            feed: feed,
            cacheLimit: limits.ingestCacheDevices,
            nonceJumpAllowance: UInt64(limits.nonceJumpAllowance),
            admission: configuration.security.deviceAdmission,
            keyRotated: { id in
                await audit.record(
                    AuditDraft(
                        atMs: clock(),
                        actor: "device:\(LogText.escaped(id))",
                        role: "",
                        action: "deviceKeyRotated",
                        target: "device_id=\(id)",
                        bodyDigest: "",
                        outcome: "ok",
                        requestID: "",
                        clientAddress: ""
                    )
                )
            }
        )
        let devices = SQLiteDeviceStore(database: database, writer: writer, retention: limits.retention, events: registryEvents)
        let activity = try await DeviceActivity(store: devices, logger: logger, metrics: metrics)
        let commands = try await CommandService(
            store: devices,
            resultTimeoutSeconds: configuration.commands.resultTimeoutSeconds,
            maxPending: configuration.commands.maxPending,
            defaultTTLSeconds: configuration.commands.defaultTTLSeconds,
            logger: logger,
            clock: clock
        )
        let keyRing = FirmwareKeyRing(directory: configuration.security.keysDirectory, logger: logger)
        let ota = try await OTAService(
            store: devices,
            catalog: FirmwareCatalog(directory: FirmwareDirectory(path: configuration.ota.firmwareDirectory), keyRing: keyRing),
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
            policy: configuration.security.deviceBinding,
            windowSeconds: limits.bindingWindowSeconds,
            bindings: try await devices.bindings()
        )
        let access = DeviceAccess(
            binding: binding,
            addresses: ClientAddressResolver(trustedProxies: configuration.http.trustedProxies, header: configuration.http.forwardedHeader),
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
        let offlineAfterMs = Int64(configuration.devices.offlineAfterSeconds) * 1000
        metrics.sample("ecowatt_devices_online") { Double(activity.activeCount(sinceMs: clock() - offlineAfterMs)) }
        metrics.sample("ecowatt_ota_active_sessions") { Double(ota.activeSessionCount) }
        metrics.sample("ecowatt_mqtt_backlog") { Double(feed.status.backlog) }
        metrics.sample("ecowatt_mqtt_connected") { feed.status.connected ? 1 : 0 }
        metrics.sample("ecowatt_devices_known") { Double(activity.counts.known) }
        metrics.sample("ecowatt_devices_bound") { Double(binding.boundCount(nowMs: clock())) }
        metrics.set("ecowatt_fleet_key_public", fleetKeyNotice.isPublic ? 1 : 0)
        // The bootstrap token works as an admin until an admin revokes it (then it is never created again).
        var token = ""
        if try await !accountStore.bootstrapTokenRevoked() {
            let (loaded, created) = try OperatorToken.loadOrCreate(path: configuration.security.operatorTokenPath)
            token = loaded
            logger.notice(
                created ? "generated the bootstrap operator token (an admin until revoked)" : "bootstrap operator token loaded",
                metadata: ["path": "\(configuration.security.operatorTokenPath)"]
            )
        }
        let hasher = PasswordHasher(cost: UInt8(configuration.accounts.passwordCost), maxQueued: configuration.accounts.maxQueuedHashes)
        let accounts = AccountService(
            store: accountStore,
            hasher: hasher,
            audit: audit,
            settings: configuration.accounts,
            bootstrapToken: token.isEmpty ? nil : token,
            secureCookies: configuration.http.tlsCertFile != nil,
            metrics: metrics,
            logger: logger,
            clock: clock
        )
        if try await !accounts.hasUsers() {
            logger.notice(
                "no operator accounts yet: create the first admin with `ecowatt user add NAME --role admin` (it uses the bootstrap token), then revoke the bootstrap token with `ecowatt token revoke-bootstrap`"
            )
        }
        let credentials = DeviceCredentialService(store: store, ingest: ingest, clock: clock)

        return EcoWattServices(
            configuration: configuration,
            logger: logger,
            clock: clock,
            lock: lock,
            database: database,
            writer: writer,
            store: store,
            devices: devices,
            metrics: metrics,
            faults: faults,
            clientErrors: clientErrors,
            deviceEvents: deviceEvents,
            diagnostics: diagnostics,
            feed: feed,
            ingest: ingest,
            activity: activity,
            commands: commands,
            keyRing: keyRing,
            ota: ota,
            binding: binding,
            access: access,
            boot: boot,
            fleetKey: fleetKeyNotice,
            operatorToken: token,
            accounts: accounts,
            credentials: credentials,
            hasher: hasher
        )
    }
}
