import EcoWattProtocol
import EcoWattStorage
import Logging
import ServiceLifecycle

/// Keeps the per-minute and per-hour rollups up to date and drops telemetry past its retention (issue 17).
///
/// Both run in small batches through the store's single writer, with a pause between batches, so ingest never waits
/// behind more than one batch: a rollup batch recomputes the changed hours of `batchSize` devices; a prune batch
/// drops at most `batchSize` chunks (each up to an hour of one device) and as many rollups.
struct TelemetryMaintenance: Service {
    let store: any TelemetryStore
    let retention: RetentionPolicy
    let metrics: ServerMetrics
    let logger: Logger
    let now: @Sendable () -> Int64
    var interval: Duration = .seconds(30)
    var batchSize = 200
    var pause: Duration = .milliseconds(20)
    var maxRounds = 100

    func run() async throws {
        await repeatUntilShutdown(every: interval) { await runOnce() }
    }

    /// One round: pruning until nothing is older than the cutoffs (bounded work), then rollups of changed devices (both
    /// stop early at shutdown).
    func runOnce() async {
        do {
            let cutoffs = TelemetryCutoffs(nowMs: now(), rawDays: retention.rawTelemetryDays, rollupDays: retention.rollupDays)
            var dropped = 0
            while !Task.isCancelled {
                let count = try await store.pruneTelemetry(cutoffs, limit: batchSize)
                dropped += count
                if count == 0 { break }
                try? await Task.sleep(for: pause)
            }
            if dropped > 0 {
                metrics.increment("ecowatt_telemetry_pruned_total", by: dropped)
                logger.info("telemetry past retention dropped", metadata: ["rows": "\(dropped)"])
            }
            // Rounds until every device is up to date (a round recomputes at most a day per device), at most
            // `maxRounds` per wake-up: devices that upload all the time are never all up to date.
            var devices = 0
            for _ in 0..<maxRounds where !Task.isCancelled {
                let done = try await store.refreshRollups(limit: batchSize)
                devices += done
                if done == 0 { break }
                try? await Task.sleep(for: pause)
            }
            if devices > 0 { metrics.increment("ecowatt_rollup_refreshes_total", by: devices) }
        } catch  where error.isShutdown {
        } catch {
            logger.warning("telemetry maintenance failed", metadata: ["error": "\(error.logDescription)"])
        }
    }
}

extension EcoWattServices {
    /// One round of the rollup and retention job now (tests; the server runs it every 30 s).
    public func runTelemetryMaintenance() async { await maintenance.runOnce() }

    /// The rollup and retention job over this server's store.
    var maintenance: TelemetryMaintenance {
        TelemetryMaintenance(store: store, retention: configuration.limits.retention, metrics: metrics, logger: logger, now: clock)
    }
}
