import EcoWattAPI
import EcoWattProtocol
import EcoWattStorage
import Foundation
import Hummingbird

extension EcoWattServices {
    /// The routes: device routes (and health) on the device listener; operator routes behind the bearer token, on the
    /// operator listener when `operator_port` is set, else beside the device routes.
    func buildRouters(
        listeners: Listeners
    ) throws -> (devices: Router<EcoWattRequestContext>, operators: Router<EcoWattRequestContext>) {
        // Routes see services, never stores.
        let registry = DeviceService(
            store: devices,
            activity: activity,
            binding: binding,
            ingest: ingest,
            offlineAfterMs: Int64(configuration.devices.offlineAfterSeconds) * 1000,
            updating: { [ota] in ota.isUpdating($0) },
            deleted: { [eventLog, vitals] ids in
                eventLog.forget(ids)
                vitals.forget(ids)
            },
            clock: clock
        )
        let deviceRoutes = DeviceRoutes(devices: registry, boot: boot, access: access, clock: clock)
        let commandRoutes = CommandRoutes(commands: commands, access: access, clock: clock)
        let configService = ConfigService(store: devices, ingest: ingest, clock: clock)
        let reportService = ReportService(store: devices)
        let queries = TelemetryQueries(store: store)
        let configRoutes = ConfigRoutes(
            config: configService,
            boot: boot,
            access: access,
            clock: clock
        )
        let reportRoutes = ReportRoutes(reports: reportService, access: access, clock: clock)
        let diagnosticsRoutes = DiagnosticsRoutes(
            diagnostics: diagnostics,
            devices: registry,
            access: access,
            clock: clock
        )
        let otaRoutes = OTARoutes(
            ota: ota,
            boot: boot,
            access: access
        )
        let health = HealthRoutes(storage: storage.probe, ota: ota, fleetKey: fleetKey, feed: feed)
        let router = listeners.makeRouter(
            metrics: metrics,
            clientErrors: clientErrors,
            serverErrors: serverErrors,
            health: health,
            tls: !listeners.separateOperator
        )
        // Device routes: no authentication (the firmware sends none); uploads carry their own HMAC envelope.
        // Injected network faults apply to these routes only.
        let deviceRouter = router.group()
        if faults.enabled { deviceRouter.add(middleware: FaultInjectionMiddleware(faults: faults)) }
        TelemetryRoutes(
            ingest: ingest,
            activity: activity,
            boot: boot,
            access: access,
            watch: UploadWatch(log: eventLog, vitals: vitals, live: live, rollouts: rollouts),
            maxBodyBytes: configuration.http.maxBodyBytes,
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
            ? listeners.makeRouter(metrics: metrics, clientErrors: clientErrors, serverErrors: serverErrors, health: health, tls: true) : router
        // Operator routes: authentication, the role matrix, CSRF and the audit trail (issue 19).
        let operatorRoutes = operatorRouter.group().add(
            middleware: AccessMiddleware(
                accounts: accounts,
                addresses: access.addresses,
                policy: .documented,
                maxBodyBytes: max(configuration.ota.maxFirmwareBytes, OperatorAPI.maxJSONBytes)
            )
        )
        // The operator API v1, generated from openapi.json (issue 18).
        try OperatorAPI(
            devices: registry,
            telemetry: queries,
            commands: commands,
            config: configService,
            reports: reportService,
            diagnostics: diagnostics,
            ota: ota,
            ingest: ingest,
            feed: feed,
            faults: faults,
            accounts: accounts,
            credentials: credentials,
            eventLog: eventLog,
            vitals: vitals,
            system: SystemFacts(
                startedAtMs: startedAtMs,
                databaseSize: databaseSize,
                live: live,
                maxEventStreams: configuration.dashboard.maxEventStreams
            ),
            rollouts: rollouts,
            bootstrapTokenPath: configuration.security.operatorTokenPath,
            maxFirmwareBytes: configuration.ota.maxFirmwareBytes,
            clock: clock
        )
        .register(on: operatorRoutes)
        MetricsRoutes(metrics: metrics, devices: registry, diagnostics: diagnostics, writes: { [storage] in storage.writeCounters })
            .register(on: operatorRoutes)
        // The dashboard's page and assets: public (they hold no data), same origin as the API; its live stream.
        DashboardRoutes(chartJSFile: configuration.dashboard.chartJSFile).register(on: operatorRouter)
        live.summarize { [ota, ingest, eventLog, clock] in
            EventStreamRoutes.json(
                Components.Schemas.FleetSummary.now(devices: registry, ota: ota, ingest: ingest, problems: eventLog, nowMs: clock())
            )
        }
        EventStreamRoutes(
            accounts: accounts,
            telemetry: queries,
            commands: commands,
            ota: ota,
            eventLog: eventLog,
            live: live,
            limit: EventStreamLimit(maximum: configuration.dashboard.maxEventStreams)
        )
        .register(on: operatorRoutes)

        return (router, operatorRouter)
    }
}
