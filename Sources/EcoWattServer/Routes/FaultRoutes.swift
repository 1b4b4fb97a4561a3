import EcoWattProtocol
import Foundation
import Hummingbird

/// Operator fault injection (spec §1.3, §7.8): network faults on device routes, OTA faults for one device, and
/// sandboxed security self-tests. Everything but `GET /fault/status` answers 403 unless `fault_injection` is enabled.
struct FaultRoutes {
    let faults: FaultInjector
    let ingest: IngestService
    let clock: @Sendable () -> Int64

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.post("/fault/inject", use: inject)
        router.post("/fault/security/inject", use: selfTest)
        router.get("/fault/status", use: status)
        router.post("/fault/clear", use: clear)
    }

    func requireEnabled() throws {
        guard faults.enabled else {
            throw APIError(.forbidden, "Fault injection is disabled: start the server with fault_injection enabled")
        }
    }

    static func faultID() -> String { "fault-" + FaultInjector.randomHex(8) }

    /// `{"fault_type":"network","network_fault_subtype":"timeout|disconnect|slow","target_endpoint":"/ota","probability":0.5,"parameters":{"delay_ms":2000}}`
    /// or `{"fault_type":"ota","ota_fault_subtype":"corrupt_chunk|bad_hash|bad_signature","target_device":"…","target_chunk":3}`.
    @Sendable func inject(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        try requireEnabled()
        var request = request
        let body = try await request.jsonBody()
        switch body["fault_type"]?.stringValue {
        case "network":
            guard let kind = body["network_fault_subtype"]?.stringValue.flatMap(FaultInjector.NetworkFault.Kind.init(rawValue:)) else {
                throw APIError(.badRequest, "network_fault_subtype must be timeout, disconnect or slow")
            }
            let target = body["target_endpoint"]?.stringValue ?? "all"
            guard target == "all" || FaultInjector.devicePrefixes.contains(target) else {
                throw APIError(.badRequest, "target_endpoint must be all or one of \(FaultInjector.devicePrefixes.joined(separator: ", "))")
            }
            let probability = body["probability"]?.doubleValue ?? 1
            guard (0...1).contains(probability) else { throw APIError(.badRequest, "probability must be in 0...1") }
            let delay = body["parameters"]?["delay_ms"]?.intValue ?? (kind == .disconnect ? 0 : 5000)
            guard (0...60_000).contains(delay) else { throw APIError(.badRequest, "parameters.delay_ms must be in 0...60000") }
            let fault = FaultInjector.NetworkFault(
                id: Self.faultID(),
                kind: kind,
                prefix: target == "all" ? "/" : target,
                probability: probability,
                delayMs: Int(delay)
            )
            faults.add(fault)
            return JSONBody.response(status: .created, ["success": true, "fault_id": .string(fault.id), "fault": Self.json(fault)])
        case "ota":
            guard let kind = body["ota_fault_subtype"]?.stringValue.flatMap(FaultInjector.OTAFault.Kind.init(rawValue:)) else {
                throw APIError(.badRequest, "ota_fault_subtype must be corrupt_chunk, bad_hash or bad_signature")
            }
            guard let device = body["target_device"]?.stringValue, EcoWattRequestContext.isValidDeviceID(device) else {
                throw APIError(.badRequest, "target_device is required")
            }
            let chunk = body["target_chunk"]?.intValue.flatMap { Int(exactly: $0) }
            let fault = FaultInjector.OTAFault(id: Self.faultID(), kind: kind, deviceID: device, chunk: chunk)
            faults.add(fault)
            return JSONBody.response(status: .created, ["success": true, "fault_id": .string(fault.id), "fault": Self.json(fault)])
        default:
            throw APIError(.badRequest, "fault_type must be network or ota (security self-tests: POST /fault/security/inject)")
        }
    }

    /// `{"fault_type":"replay|invalid_hmac|tampered_payload|old_nonce|missing_nonce|invalid_format","target_device":"…"}`.
    @Sendable func selfTest(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        try requireEnabled()
        var request = request
        let body = try await request.jsonBody()
        guard let test = body["fault_type"]?.stringValue.flatMap(SecuritySelfTest.init(rawValue:)) else {
            throw APIError(
                .badRequest,
                "fault_type must be one of \(SecuritySelfTest.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        guard let device = body["target_device"]?.stringValue, EcoWattRequestContext.isValidDeviceID(device) else {
            throw APIError(.badRequest, "target_device is required")
        }
        let result = test.run(deviceID: device, key: ingest.key(for: device), now: QueryRoutes.iso(clock()))
        faults.recordSelfTest(result)
        return JSONBody.response(result)
    }

    @Sendable func status(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let snapshot = faults.snapshot
        return JSONBody.response([
            "success": true, "enabled": .bool(faults.enabled),
            "network_faults": .array(snapshot.network.map(Self.json)), "ota_faults": .array(snapshot.ota.map(Self.json)),
            "security_self_tests": .array(snapshot.selfTests),
        ])
    }

    /// Clears every fault, or `?fault_id=` only.
    @Sendable func clear(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        try requireEnabled()
        let id = request.uri.queryParameters["fault_id"].map(String.init)
        let removed = faults.clear(id: id)
        if id != nil, removed == 0 { throw APIError(.notFound, "No fault \(id!)") }
        return JSONBody.response(["success": true, "cleared": .int(Int64(removed))])
    }

    static func json(_ fault: FaultInjector.NetworkFault) -> JSONValue {
        .object([
            ("fault_id", .string(fault.id)), ("fault_type", "network"), ("network_fault_subtype", .string(fault.kind.rawValue)),
            ("target_endpoint", .string(fault.prefix == "/" ? "all" : fault.prefix)), ("probability", .double(fault.probability)),
            ("delay_ms", .int(Int64(fault.delayMs))), ("injected", .int(Int64(fault.injected))),
        ])
    }

    static func json(_ fault: FaultInjector.OTAFault) -> JSONValue {
        .object([
            ("fault_id", .string(fault.id)), ("fault_type", "ota"), ("ota_fault_subtype", .string(fault.kind.rawValue)),
            ("target_device", .string(fault.deviceID)), ("target_chunk", fault.chunk.map { .int(Int64($0)) } ?? .null),
            ("injected", .int(Int64(fault.injected))),
        ])
    }
}
