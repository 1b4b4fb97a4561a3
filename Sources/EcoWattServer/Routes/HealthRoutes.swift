import EcoWattProtocol
import Foundation
import Hummingbird

/// Open liveness route.
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
