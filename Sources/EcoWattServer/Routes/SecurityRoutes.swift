import EcoWattProtocol
import Hummingbird

/// Operator security routes (spec §1.3, §2.4).
struct SecurityRoutes {
    let ingest: IngestService

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.delete("/security/nonces/:id", use: resetNonce)
        router.get("/security/stats", use: stats)
    }

    @Sendable func resetNonce(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let existed = try await ingest.resetNonce(deviceID: deviceID)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "had_nonce_state": .bool(existed),
            "message": .string("Anti-replay state cleared; the next upload with any nonce is accepted"),
        ])
    }

    @Sendable func stats(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        JSONBody.response(["success": true, "statistics": Self.statisticsObject(ingest.statistics)])
    }

    /// The envelope counters since start (spec §1.3 shape, plus rejects per reason and packet counts).
    static func statisticsObject(_ counters: IngestCounters) -> JSONValue {
        let failed = counters.validations - counters.accepted
        let rate = counters.validations > 0 ? Double(counters.accepted) / Double(counters.validations) : 0
        return .object([
            ("total_validations", .int(Int64(counters.validations))),
            ("successful_validations", .int(Int64(counters.accepted))), ("failed_validations", .int(Int64(failed))),
            ("replay_attacks_blocked", .int(Int64(counters.rejected["replay"] ?? 0))),
            ("signature_failures", .int(Int64(counters.rejected["mac"] ?? 0))),
            ("malformed", .int(Int64((counters.rejected["malformed"] ?? 0) + counters.invalidPayload))),
            ("rejected_by_reason", countsObject(counters.rejected)),
            ("invalid_payloads", .int(Int64(counters.invalidPayload))),
            ("storage_failures", .int(Int64(counters.storageFailures))), ("success_rate", .double(rate)),
            ("packets_by_marker", countsObject(counters.packets)),
            ("undecodable_by_reason", countsObject(counters.undecodable)),
            ("samples_stored", .int(Int64(counters.samples))),
        ])
    }

    /// Counts by key as a JSON object with a stable (sorted) key order.
    static func countsObject(_ counts: [String: Int]) -> JSONValue {
        .object(counts.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })
    }
}
