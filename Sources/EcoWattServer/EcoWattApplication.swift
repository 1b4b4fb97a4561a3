import Crypto
import EcoWattProtocol
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
    /// The services behind the routes (what tests and the CLI reach).
    public let services: EcoWattServices

    public var configuration: ServerConfiguration { services.configuration }
    public var storage: ServerStorage { services.storage }
    public var store: any TelemetryStore & OutboxStore { services.store }
    public var ingest: IngestService { services.ingest }
    public var devices: any ServerStorage.DeviceStores { services.devices }
    public var activity: DeviceActivity { services.activity }
    public var commands: CommandService { services.commands }
    public var ota: OTAService { services.ota }
    public var metrics: ServerMetrics { services.metrics }
    public var faults: FaultInjector { services.faults }
    public var diagnostics: DiagnosticsService { services.diagnostics }
    public var feed: MQTTPublisher { services.feed }
    public var boot: BootMessages { services.boot }
    public var fleetKey: FleetKeyNotice { services.fleetKey }
    public var operatorToken: String { services.operatorToken }
    public var lock: DataDirectoryLock { services.lock }

    /// Epoch milliseconds now: the arrival time stamped on uploads.
    public static let systemClock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Builds the services and their routes, and the listeners around them.
    /// - Parameter clock: arrival time of uploads in epoch ms (tests replaying captures inject the capture time).
    public init(
        configuration: ServerConfiguration,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64 = systemClock
    ) async throws {
        let services = try await EcoWattServices.build(configuration: configuration, logger: logger, clock: clock)
        let listeners = try Listeners(configuration: configuration, logger: logger)
        let (router, operatorRouter) = try services.buildRouters(listeners: listeners)
        let (ingest, activity, commands, ota, feed, boot, metrics, keyRing) = (
            services.ingest, services.activity, services.commands, services.ota, services.feed, services.boot,
            services.metrics, services.keyRing
        )
        var application = try listeners.deviceApplication(
            router: router,
            metrics: metrics,
            // The MQTT client connects once the device port is bound (a server that cannot bind never connects).
            onListening: { feed.listenerReady() }
        )
        // Shutdown runs in reverse: the HTTP server drains first, then the operator listener (added last), then the
        // services (activity flushes last_seen), and the writer, added before them, commits what is queued last.
        application.addServices(services.storage.services)
        application.addServices(
            ingest,
            activity,
            commands,
            ota,
            feed,
            services.clientErrors,
            services.serverErrors,
            services.deviceEvents,
            boot,
            services.maintenance,
            services.hasher,
            services.accounts,
            services.live,
            services.rollouts,
            MemoryTrimmer(metrics: metrics),
            HangupReloader(
                logger: logger,
                actions: [{ keyRing.reload(logger: logger) }, { listeners.tls?.reload(logger: logger) }]
            )
        )
        if let feed = services.storage.feed {
            application.addServices(
                InstanceChangeListener(
                    feed: feed,
                    devices: services.devices,
                    binding: services.binding,
                    boot: boot,
                    commands: commands,
                    ingest: ingest,
                    ota: ota,
                    rollouts: services.rollouts,
                    logger: logger
                )
            )
        }
        if let database = services.storage.sqlite {
            application.addServices(
                DatabaseSizeMonitor(database: database, metrics: metrics, logger: logger, reading: services.databaseSize, now: clock)
            )
        }
        if listeners.separateOperator {
            application.addServices(try listeners.operatorApplication(router: operatorRouter, metrics: metrics))
        }

        self.application = application
        self.services = services
    }
}
