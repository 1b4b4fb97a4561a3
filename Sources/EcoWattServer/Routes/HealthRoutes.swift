import EcoWattProtocol
import EcoWattStorage
import Foundation
import Hummingbird
import MQTTBridge

/// Open liveness and readiness probes. (The firmware's boot self-test, `GET /ota/status`, is in ``OTARoutes``.)
struct HealthRoutes {
    let storage: any StorageProbe
    let ota: OTAService
    let fleetKey: FleetKeyNotice
    let feed: MQTTPublisher

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/health") { _, _ in
            JSONBody.response([
                "status": "healthy", "service": "ecowatt-cloud",
                "timestamp": .string(Date().formatted(Date.ISO8601FormatStyle())),
            ])
        }
        router.get("/ready", use: ready)
    }

    /// 200 when the database answers a read, the single writer runs without a stall, and the FOTA keys are loaded; 503
    /// otherwise; the MQTT feed's state is reported beside them. It writes nothing (the route is open). The fleet
    /// key's check is a warning, never a 503: a fleet on
    /// the default key works, it is just open to forged uploads.
    @Sendable func ready(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        var checks: [(String, JSONValue)] = []
        let database = await storage.probe(stalledAfter: .seconds(5))
        var ready = database.ready
        checks.append(("database", .string(database.detail)))
        if ota.keys != nil {
            checks.append(("firmware_keys", "loaded"))
        } else {
            ready = false
            checks.append(("firmware_keys", .string("not loaded: \(ota.keysError ?? "unknown")")))
        }
        checks.append(("fleet_key", .string(fleetKey.readiness)))
        // The feed is reported, never a 503: uploads are kept in the outbox while the broker is away.
        let feedStatus = feed.status
        let feedState =
            !feedStatus.enabled
            ? "disabled" : feedStatus.connected ? "connected" : "disconnected (\(feedStatus.lastError ?? "connecting"))"
        checks.append(("mqtt", .string(feedState)))
        return JSONBody.response(
            status: ready ? .ok : .serviceUnavailable,
            ["status": .string(ready ? "ready" : "not_ready"), "checks": .object(checks)]
        )
    }
}
