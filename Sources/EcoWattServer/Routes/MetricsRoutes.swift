import Hummingbird

/// `GET /metrics` (operator token): the Prometheus scrape, where monitoring expects it (not under `/api/v1`).
struct MetricsRoutes {
    let metrics: ServerMetrics
    let devices: DeviceService
    let diagnostics: DiagnosticsService
    /// Transactions and writes the storage writer committed since start (group commit: writes per transaction).
    let writes: @Sendable () -> (batches: Int, jobs: Int, failed: Int)

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/metrics", use: scrape)
    }

    @Sendable func scrape(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        // Figures that live in the database are read here, once per scrape.
        if let counts = try? await devices.retentionCounts() {
            for (table, rows) in counts.rows { metrics.set("ecowatt_retained_rows", Double(rows), [("table", table)]) }
            for (table, rows) in counts.dropped { metrics.set("ecowatt_retention_dropped_rows", Double(rows), [("table", table)]) }
        }
        let committed = writes()
        metrics.set("ecowatt_storage_transactions", Double(committed.batches))
        metrics.set("ecowatt_storage_writes", Double(committed.jobs))
        metrics.set("ecowatt_storage_failed_transactions", Double(committed.failed))
        if let usage = try? await diagnostics.usage() {
            metrics.set("ecowatt_diagnostics_bytes", Double(usage.bytes))
            metrics.set("ecowatt_diagnostics_files_dropped", Double(usage.dropped))
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition()))
        )
    }
}
