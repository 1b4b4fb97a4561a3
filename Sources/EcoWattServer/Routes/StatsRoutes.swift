import EcoWattProtocol
import EcoWattStorage
import Hummingbird

/// Operator statistics from the live counters (spec §1.3) and the Prometheus scrape.
struct StatsRoutes {
    let ingest: IngestService
    let commands: CommandService
    let ota: OTAService
    let metrics: ServerMetrics
    let devices: DeviceService
    let diagnostics: DiagnosticsService

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/stats", use: stats)
        router.get("/compression/stats", use: compression)
        router.get("/metrics", use: scrape)
    }

    /// Per method: packets, decoded, byte totals and the ratio compressed / original; undecodable packets by reason.
    static func compressionObject(_ counters: IngestCounters) -> JSONValue {
        let packets = counters.methods.values.reduce(0) { PacketLimits.adding($0, $1.packets) }
        let decoded = counters.methods.values.reduce(0) { PacketLimits.adding($0, $1.decoded) }
        let original = counters.methods.values.reduce(0) { PacketLimits.adding($0, $1.originalBytes) }
        let compressed = counters.methods.values.reduce(0) { PacketLimits.adding($0, $1.compressedBytes) }
        func ratio(_ compressed: Int, _ original: Int) -> JSONValue {
            original > 0 ? .double(Double(compressed) / Double(original)) : .null
        }
        return .object([
            ("total_packets", .int(Int64(packets))), ("decoded_packets", .int(Int64(decoded))),
            ("undecodable_packets", .int(Int64(packets - decoded))),
            ("success_rate", .double(packets > 0 ? Double(decoded) / Double(packets) : 0)),
            ("total_bytes_original", .int(Int64(original))), ("total_bytes_compressed", .int(Int64(compressed))),
            ("average_ratio", ratio(compressed, original)),
            ("savings_percent", original > 0 ? .double(100 * (Double(original) - Double(compressed)) / Double(original)) : .null),
            (
                "methods",
                .object(
                    counters.methods.sorted { $0.key < $1.key }.map { name, counts in
                        (
                            name,
                            .object([
                                ("packets", .int(Int64(counts.packets))), ("decoded", .int(Int64(counts.decoded))),
                                ("bytes_original", .int(Int64(counts.originalBytes))),
                                ("bytes_compressed", .int(Int64(counts.compressedBytes))),
                                ("ratio", ratio(counts.compressedBytes, counts.originalBytes)),
                            ])
                        )
                    }
                )
            ),
            ("packets_by_marker", SecurityRoutes.countsObject(counters.packets)),
            ("undecodable_by_reason", SecurityRoutes.countsObject(counters.undecodable)),
            // Stored raw when they arrived, decoded once their predecessors came (a backlog out of order).
            ("completed_packets", .int(Int64(counters.completed))),
            // Batches re-sent after a lost 200: acknowledged, not stored again.
            ("resent_packets", .int(Int64(counters.resent))),
        ])
    }

    @Sendable func compression(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        JSONBody.response(["success": true, "statistics": Self.compressionObject(ingest.statistics)])
    }

    /// Everything in one answer: compression, security, OTA and commands.
    @Sendable func stats(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let counters = ingest.statistics
        let ota = try await ota.counts()
        let commands = try await commands.counts()
        return JSONBody.response([
            "success": true,
            "statistics": .object([
                ("timestamp", .string(QueryRoutes.iso(self.ota.clock()))),
                ("compression", Self.compressionObject(counters)),
                ("security", SecurityRoutes.statisticsObject(counters)),
                (
                    "ota",
                    .object([
                        ("active_sessions", .int(Int64(ota.activeSessions))),
                        ("sessions_by_outcome", SecurityRoutes.countsObject(ota.sessionsByOutcome)),
                        ("chunks_served", .int(ota.chunksServed)), ("bytes_served", .int(ota.bytesServed)),
                        ("active_deployments", .int(Int64(ota.activeDeployments))),
                    ])
                ),
                ("commands", SecurityRoutes.countsObject(Dictionary(uniqueKeysWithValues: commands.map { ($0.key.rawValue, $0.value) }))),
            ]),
        ])
    }

    /// `GET /metrics`: Prometheus text format.
    @Sendable func scrape(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        // Figures that live in the database are read here, once per scrape.
        if let counts = try? await devices.retentionCounts() {
            for (table, rows) in counts.rows { metrics.set("ecowatt_retained_rows", Double(rows), [("table", table)]) }
            for (table, rows) in counts.dropped { metrics.set("ecowatt_retention_dropped_rows", Double(rows), [("table", table)]) }
        }
        let usage = diagnostics.usage
        metrics.set("ecowatt_diagnostics_bytes", Double(usage.bytes))
        metrics.set("ecowatt_diagnostics_files_dropped", Double(usage.droppedFiles))
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition()))
        )
    }
}
