import EcoWattProtocol
import Foundation
import Hummingbird

/// Open liveness routes, and the firmware's boot self-test.
struct HealthRoutes {
    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        // The firmware's boot self-test (spec §1.2 A): only HTTP 200 matters; without it the device skips
        // `POST /devices` and `POST /ota/{id}/complete`. OTA sessions themselves are not served yet (issue 6).
        router.get("/ota/status") { _, _ in
            JSONBody.response(["success": true, "status": .object([("active_sessions", 0), ("ota_available", false)])])
        }
        router.get("/health") { _, _ in
            JSONBody.response([
                "status": "healthy", "service": "ecowatt-cloud",
                "timestamp": .string(Date().formatted(Date.ISO8601FormatStyle())),
            ])
        }
    }
}
