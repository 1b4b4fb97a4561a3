import EcoWattAPI
import EcoWattProtocol
import Foundation
import OpenAPIRuntime

// Statistics, the MQTT feed, fault injection and the document itself.
extension OperatorAPI {
    func getStats(_ input: Operations.GetStats.Input) async throws -> Operations.GetStats.Output {
        let counters = ingest.statistics
        let stats = Schemas.Stats(
            timestamp: date(clock()),
            compression: Self.compressionStats(counters),
            security: Self.securityStats(counters),
            ota: try await otaStats(),
            commands: Self.commandStats(try await commands.counts())
        )
        return .ok(.init(body: .json(stats)))
    }

    func getCompressionStats(_ input: Operations.GetCompressionStats.Input) async throws -> Operations.GetCompressionStats.Output {
        .ok(.init(body: .json(Self.compressionStats(ingest.statistics))))
    }

    func getSecurityStats(_ input: Operations.GetSecurityStats.Input) async throws -> Operations.GetSecurityStats.Output {
        .ok(.init(body: .json(Self.securityStats(ingest.statistics))))
    }

    /// Per method: packets, decoded, byte totals and the ratio compressed / original; undecodable packets by reason.
    static func compressionStats(_ counters: IngestCounters) -> Schemas.CompressionStats {
        let methods = counters.methods.values
        let packets = methods.reduce(0) { PacketLimits.adding($0, $1.packets) }
        let decoded = methods.reduce(0) { PacketLimits.adding($0, $1.decoded) }
        let original = methods.reduce(0) { PacketLimits.adding($0, $1.originalBytes) }
        let compressed = methods.reduce(0) { PacketLimits.adding($0, $1.compressedBytes) }
        func ratio(_ compressed: Int, _ original: Int) -> Double? { original > 0 ? Double(compressed) / Double(original) : nil }
        return Schemas.CompressionStats(
            totalPackets: Int64(packets),
            decodedPackets: Int64(decoded),
            undecodablePackets: Int64(packets - decoded),
            successRate: packets > 0 ? Double(decoded) / Double(packets) : 0,
            totalBytesOriginal: Int64(original),
            totalBytesCompressed: Int64(compressed),
            averageRatio: ratio(compressed, original),
            savingsPercent: original > 0 ? 100 * (Double(original) - Double(compressed)) / Double(original) : nil,
            methods: .init(
                additionalProperties: counters.methods.mapValues { counts in
                    .init(
                        packets: Int64(counts.packets),
                        decoded: Int64(counts.decoded),
                        bytesOriginal: Int64(counts.originalBytes),
                        bytesCompressed: Int64(counts.compressedBytes),
                        ratio: ratio(counts.compressedBytes, counts.originalBytes)
                    )
                }
            ),
            packetsByMarker: .init(counters.packets),
            undecodableByReason: .init(counters.undecodable),
            completedPackets: Int64(counters.completed),
            resentPackets: Int64(counters.resent)
        )
    }

    /// The envelope counters since start.
    static func securityStats(_ counters: IngestCounters) -> Schemas.SecurityStats {
        Schemas.SecurityStats(
            totalValidations: Int64(counters.validations),
            successfulValidations: Int64(counters.accepted),
            failedValidations: Int64(counters.validations - counters.accepted),
            replayAttacksBlocked: Int64(counters.rejected["replay"] ?? 0),
            signatureFailures: Int64(counters.rejected["mac"] ?? 0),
            malformed: Int64((counters.rejected["malformed"] ?? 0) + counters.invalidPayload),
            rejectedByReason: .init(counters.rejected),
            invalidPayloads: Int64(counters.invalidPayload),
            storageFailures: Int64(counters.storageFailures),
            successRate: counters.validations > 0 ? Double(counters.accepted) / Double(counters.validations) : 0,
            samplesStored: Int64(counters.samples)
        )
    }

    func getMQTTStatus(_ input: Operations.GetMQTTStatus.Input) async throws -> Operations.GetMQTTStatus.Output {
        let status = feed.status
        let configuration = feed.configuration
        let body = Schemas.MQTTStatus(
            enabled: status.enabled,
            connected: status.connected,
            broker: "\(configuration.client.host):\(configuration.client.port)",
            topicPrefix: configuration.topicPrefix,
            backlog: Int64(status.backlog),
            inflight: Int64(status.inflight),
            published: Int64(status.published),
            failed: Int64(status.failed),
            dropped: Int64(status.dropped),
            outboxLimit: Int64(configuration.outboxLimit),
            lastError: status.lastError
        )
        return .ok(.init(body: .json(body)))
    }

    // MARK: Fault injection

    /// 403 unless the server runs with `fault_injection`.
    func requireFaultInjection() throws {
        guard faults.enabled else {
            throw APIError(.forbidden, "Fault injection is disabled (fault_injection / --fault-injection)", code: "disabled")
        }
    }

    func getFaults(_ input: Operations.GetFaults.Input) async throws -> Operations.GetFaults.Output {
        let snapshot = faults.snapshot
        let body = Schemas.Faults(
            enabled: faults.enabled,
            networkFaults: snapshot.network.map(Schemas.NetworkFault.init),
            otaFaults: snapshot.ota.map(Schemas.OTAFault.init),
            securitySelfTests: snapshot.selfTests.map(Schemas.JSONObject.init)
        )
        return .ok(.init(body: .json(body)))
    }

    func clearFaults(_ input: Operations.ClearFaults.Input) async throws -> Operations.ClearFaults.Output {
        try requireFaultInjection()
        let id = input.query.faultId
        let removed = faults.clear(id: id)
        if let id, removed == 0 { throw APIError(.notFound, "No fault \(id)") }
        return .ok(.init(body: .json(.init(cleared: removed))))
    }

    func injectNetworkFault(_ input: Operations.InjectNetworkFault.Input) async throws -> Operations.InjectNetworkFault.Output {
        try requireFaultInjection()
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        let kind = FaultInjector.NetworkFault.Kind(rawValue: body.kind.rawValue)!
        let target = body.targetEndpoint ?? "all"
        guard target == "all" || FaultInjector.devicePrefixes.contains(target) else {
            throw APIError(
                .unprocessableContent,
                "target_endpoint must be all or one of \(FaultInjector.devicePrefixes.joined(separator: ", "))",
                code: "invalid"
            )
        }
        let probability = body.probability ?? 1
        guard (0...1).contains(probability) else { throw APIError(.unprocessableContent, "probability must be in 0...1", code: "invalid") }
        let delay = body.delayMs ?? (kind == .disconnect ? 0 : 5000)
        guard (0...60_000).contains(delay) else { throw APIError(.unprocessableContent, "delay_ms must be in 0...60000", code: "invalid") }
        let fault = FaultInjector.NetworkFault(
            id: FaultInjector.newID(),
            kind: kind,
            prefix: target == "all" ? "/" : target,
            probability: probability,
            delayMs: delay
        )
        faults.add(fault)
        return .created(.init(body: .json(.init(fault))))
    }

    func injectOTAFault(_ input: Operations.InjectOTAFault.Input) async throws -> Operations.InjectOTAFault.Output {
        try requireFaultInjection()
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        guard EcoWattRequestContext.isValidDeviceID(body.deviceId) else {
            throw APIError(.unprocessableContent, "device_id must be 1-128 printable ASCII characters", code: "invalid")
        }
        if let chunk = body.chunk, chunk < 0 { throw APIError(.unprocessableContent, "chunk must not be negative", code: "invalid") }
        let kind = FaultInjector.OTAFault.Kind(rawValue: body.kind.rawValue)!
        let fault = FaultInjector.OTAFault(id: FaultInjector.newID(), kind: kind, deviceID: body.deviceId, chunk: body.chunk)
        faults.add(fault)
        return .created(.init(body: .json(.init(fault))))
    }

    func runSecurityTest(_ input: Operations.RunSecurityTest.Input) async throws -> Operations.RunSecurityTest.Output {
        try requireFaultInjection()
        guard case .json(let body) = input.body else { throw APIError(.unsupportedMediaType, "application/json expected") }
        guard EcoWattRequestContext.isValidDeviceID(body.deviceId) else {
            throw APIError(.unprocessableContent, "device_id must be 1-128 printable ASCII characters", code: "invalid")
        }
        let test = SecuritySelfTest(rawValue: body.test.rawValue)!
        let result = test.run(deviceID: body.deviceId, key: ingest.key(for: body.deviceId), now: EpochTime.iso8601(milliseconds: clock()))
        faults.recordSelfTest(result)
        return .ok(.init(body: .json(.init(result))))
    }

    func getOpenAPIDocument(_ input: Operations.GetOpenAPIDocument.Input) async throws -> Operations.GetOpenAPIDocument.Output {
        .ok(.init(body: .json(try JSONDecoder().decode(Schemas.JSONObject.self, from: Data(OpenAPIDocument.bytes)))))
    }
}

extension Schemas.NetworkFault {
    init(_ fault: FaultInjector.NetworkFault) {
        self.init(
            faultId: fault.id,
            kind: .init(rawValue: fault.kind.rawValue)!,
            targetEndpoint: fault.prefix == "/" ? "all" : fault.prefix,
            probability: fault.probability,
            delayMs: fault.delayMs,
            injected: Int64(fault.injected)
        )
    }
}

extension Schemas.OTAFault {
    init(_ fault: FaultInjector.OTAFault) {
        self.init(
            faultId: fault.id,
            kind: .init(rawValue: fault.kind.rawValue)!,
            deviceId: fault.deviceID,
            chunk: fault.chunk,
            injected: Int64(fault.injected)
        )
    }
}
