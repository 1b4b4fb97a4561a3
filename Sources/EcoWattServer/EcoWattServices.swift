import Crypto
import EcoWattProtocol
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
    /// The configured backend's stores (SQLite or PostgreSQL).
    public let storage: ServerStorage
    public var store: any TelemetryStore & OutboxStore { storage.telemetry }
    public var devices: any ServerStorage.DeviceStores { storage.devices }
    public let metrics: ServerMetrics
    public let faults: FaultInjector
    let clientErrors: RateLimitedLog
    let serverErrors: RateLimitedLog
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
    /// What went wrong with devices, for the dashboard (in memory, bounded).
    public let eventLog: DeviceEventLog
    /// Change notices for the dashboard's live streams.
    public let live: LiveEvents
    /// Each device's latest power and upload rate, for the fleet table.
    public let vitals: DeviceVitals
    /// The database's size as last measured, for the System page.
    public let databaseSize = DatabaseSizeReading()
    /// Staged firmware rollouts.
    public let rollouts: RolloutService
    /// When the services were built (the System page's uptime).
    public let startedAtMs: Int64

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
        let registryEvents = RegistryEvents()
        let storage = try await ServerStorage.open(configuration, events: registryEvents, logger: logger)
        let store = storage.telemetry
        let notices = InstanceNotices(feed: storage.feed)
        guard let fleetKey = HexCoding.decode(configuration.security.fleetKeyHex) else {
            throw ConfigurationError.invalid("fleet_key is not hex")
        }
        let fleetKeyNotice = FleetKeyNotice(keyHex: configuration.security.fleetKeyHex)
        try await fleetKeyNotice.announce(state: storage.state, logger: logger)
        let metrics = ServerMetrics()
        let faults = FaultInjector(enabled: configuration.faultInjection)
        if faults.enabled { logger.warning("fault injection is enabled: operators can make device routes fail") }
        let limits = configuration.limits
        let logInterval = Duration.seconds(limits.clientErrorLogIntervalSeconds)
        let clientErrors = RateLimitedLog(logger: logger, what: "client errors", interval: logInterval, burst: limits.clientErrorLogBurst)
        let serverErrors = RateLimitedLog(logger: logger, what: "server errors", interval: logInterval, burst: limits.serverErrorLogBurst)
        let deviceEvents = RateLimitedLog(logger: logger, what: "device events", interval: logInterval, burst: limits.clientErrorLogBurst)
        let diagnostics = DiagnosticsService(store: storage.diagnostics)
        // Accounts and the audit trail (issue 19) come first: key rotations by uploads are audited.
        let accountStore = storage.accounts
        let audit = AuditTrail(
            store: accountStore,
            headPath: configuration.storage.auditHeadPath(configuration.accounts),
            logger: logger
        )
        var mqtt = configuration.mqtt
        if notices.shared, mqtt.client.clientID == MQTTPublisher.Configuration().client.clientID {
            // Several instances share the database and the broker: two with one client id would take turns
            // disconnecting each other.
            mqtt.client.clientID += "-\(ProcessInfo.processInfo.hostName.prefix(64))-\(configuration.http.port)"
            logger.notice("MQTT client id for this instance", metadata: ["client_id": "\(mqtt.client.clientID)"])
        }
        let feed = try await MQTTPublisher(configuration: mqtt, store: store, logger: logger, waitForListener: true)
        let ingest = IngestService(
            store: store,
            fleetKey: SymmetricKey(data: fleetKey),
            logger: logger,
            metrics: metrics,
            serverErrors: serverErrors,
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
        let devices = storage.devices
        let live = LiveEvents()
        let vitals = DeviceVitals()
        let eventLog = DeviceEventLog(maxDevices: configuration.dashboard.eventLogDevices)
        let activity = try await DeviceActivity(store: devices, logger: logger, serverErrors: serverErrors, metrics: metrics)
        let commands = try await CommandService(
            store: devices,
            resultTimeoutSeconds: configuration.commands.resultTimeoutSeconds,
            maxPending: configuration.commands.maxPending,
            defaultTTLSeconds: configuration.commands.defaultTTLSeconds,
            logger: logger,
            clock: clock,
            changed: { live.changed(.commands, deviceID: $0) },
            overdue: { id in
                eventLog.record(DeviceEventLog.Event(atMs: clock(), deviceID: id, kind: .command, reason: "timed_out"))
                live.changed(.problems, deviceID: id)
            },
            notices: notices
        )
        var otaObserver = OTAService.OTAObserver()
        otaObserver.changed = { live.changed(.ota, deviceID: $0) }
        otaObserver.failed = { id, reason in
            eventLog.record(DeviceEventLog.Event(atMs: clock(), deviceID: id, kind: .update, reason: reason))
            live.changed(.ota, deviceID: id)
            live.changed(.problems, deviceID: id)
        }
        let keyRing = FirmwareKeyRing(directory: configuration.security.keysDirectory, logger: logger)
        // On PostgreSQL every change of the versions is announced, so the list is kept; the files are imported.
        let shared = storage.feed != nil
        let catalog = FirmwareCatalog(store: storage.firmware, keyRing: keyRing, keepsVersions: shared)
        if shared {
            try await catalog.importImages(from: FirmwareDirectory(path: configuration.ota.firmwareDirectory), logger: logger)
        }
        let rollouts = RolloutService(
            store: devices,
            catalog: catalog,
            notices: notices,
            logger: logger,
            metrics: metrics,
            clock: clock,
            decided: { action, rollout in
                let detail = rollout.reason ?? "wave \(rollout.currentWave + 1) of \(rollout.waveCount)"
                await audit.record(
                    AuditDraft(
                        atMs: clock(),
                        actor: "server",
                        role: "",
                        action: action,
                        target: "rollout_id=\(rollout.id)",
                        bodyDigest: "",
                        outcome: LogText.escaped(detail),
                        requestID: "",
                        clientAddress: ""
                    )
                )
                feed.event(kind: "rollouts", payload: RolloutService.event(action, rollout, atMs: clock()))
            }
        )
        let ota = try await OTAService(
            store: devices,
            catalog: catalog,
            logger: logger,
            clock: clock,
            metrics: metrics,
            faults: faults,
            deviceEvents: deviceEvents,
            maxActiveSessions: limits.maxActiveOTASessions,
            idleLimitSeconds: limits.otaSessionIdleSeconds,
            observer: otaObserver,
            rollouts: rollouts,
            notices: notices
        )
        // Unsigned device requests are honoured from the address of the device's verified uploads (issue 14).
        // Shared with other instances: a request not from the cached binding asks the store first.
        let storedBinding: @Sendable (String) async -> DeviceBindingRecord? = { id in (try? await devices.device(id))?.binding }
        let binding = DeviceBinding(
            policy: configuration.security.deviceBinding,
            windowSeconds: limits.bindingWindowSeconds,
            bindings: try await devices.bindings(),
            lookup: notices.shared ? storedBinding : nil
        )
        let access = DeviceAccess(
            binding: binding,
            addresses: ClientAddressResolver(trustedProxies: configuration.http.trustedProxies, header: configuration.http.forwardedHeader),
            activity: activity,
            clock: clock
        )
        let boot = try await BootMessages(
            store: devices,
            registry: devices,
            ota: ota,
            ingest: ingest,
            windowSeconds: limits.holdWindowSeconds,
            caps: limits.retention.heldMessages,
            metrics: metrics,
            logger: logger,
            notices: notices
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
                eventLog.forget(ids)
                vitals.forget(ids)
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
        let hasher = PasswordHasher(
            cost: UInt8(configuration.accounts.passwordCost),
            maxQueued: configuration.accounts.maxQueuedHashes,
            sharePercent: configuration.accounts.hashSharePercent
        )
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
        var credentials = DeviceCredentialService(store: store, ingest: ingest, clock: clock)
        credentials.notices = notices

        return EcoWattServices(
            configuration: configuration,
            logger: logger,
            clock: clock,
            lock: lock,
            storage: storage,
            metrics: metrics,
            faults: faults,
            clientErrors: clientErrors,
            serverErrors: serverErrors,
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
            hasher: hasher,
            eventLog: eventLog,
            live: live,
            vitals: vitals,
            rollouts: rollouts,
            startedAtMs: clock()
        )
    }
}
