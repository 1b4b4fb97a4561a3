import EcoWattProtocol
import Foundation
import Hummingbird

/// Open liveness routes. (The firmware's boot self-test, `GET /ota/status`, is in ``OTARoutes``.)
struct HealthRoutes {
    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/health") { _, _ in
            JSONBody.response([
                "status": "healthy", "service": "ecowatt-cloud",
                "timestamp": .string(Date().formatted(Date.ISO8601FormatStyle())),
            ])
        }
    }
}
