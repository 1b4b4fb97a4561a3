import Prometheus
import Synchronization

/// The server's metrics in a Prometheus registry owned by this server (not a process-wide one, so several servers in
/// one process, as in the tests, keep separate figures). Every metric is declared once in ``catalog`` with its type
/// and help text, so `GET /metrics` carries `# HELP` and `# TYPE` for each; standard process metrics come from
/// ``ProcessMetrics``.
public final class ServerMetrics: Sendable {
    public enum Kind: Sendable { case counter, gauge, histogram }

    /// Every metric the server exposes: name, type and help.
    public static let catalog: [String: (kind: Kind, help: String)] = [
        "ecowatt_http_requests_total": (.counter, "HTTP requests by route template, method and status"),
        "ecowatt_http_request_duration_seconds": (.histogram, "HTTP request duration by route template and method"),
        "ecowatt_client_errors_total": (.counter, "Requests answered 4xx, by route template and reason"),
        "ecowatt_uploads_accepted_total": (.counter, "Uploads verified and stored"),
        "ecowatt_uploads_rejected_total": (
            .counter, "Uploads refused, by reason (mac, replay, malformed, storage, revoked, not_admitted, ...)"
        ),
        "ecowatt_logins_total": (.counter, "Operator logins by outcome (succeeded, failed, throttled, busy)"),
        "ecowatt_rollouts_created_total": (.counter, "Staged rollouts created"),
        "ecowatt_rollouts_halted_total": (.counter, "Staged rollouts halted by their failure thresholds"),
        "ecowatt_rollout_devices_finished_total": (.counter, "Rollout devices finished, by state (healthy, failed)"),
        "ecowatt_rollout_write_conflicts_total": (
            .counter, "Rollout writes refused because another writer (an instance, an operator) changed the row first; judged again"
        ),
        "ecowatt_packets_total": (.counter, "Packets received, by first blob byte (a marker the firmware writes, else other)"),
        "ecowatt_samples_stored_total": (.counter, "Decoded samples stored"),
        "ecowatt_decode_failures_total": (.counter, "Packets stored undecodable, by marker and reason"),
        "ecowatt_packets_resent_total": (.counter, "Packets acknowledged as resends of a stored batch (a lost 200), not stored twice"),
        "ecowatt_packets_completed_total": (.counter, "Packets stored raw that a later upload decoded once their predecessors arrived"),
        "ecowatt_ingest_state_conflicts_total": (
            .counter, "Uploads decoded again because another server instance changed the device's state first (PostgreSQL)"
        ),
        "ecowatt_ota_chunks_served_total": (.counter, "Firmware chunks served"),
        "ecowatt_ota_bytes_served_total": (.counter, "Firmware ciphertext bytes served"),
        "ecowatt_pending_devices_evicted_total": (.counter, "Pending device ids dropped with their rows because the pending set was full"),
        "ecowatt_unknown_device_requests_total": (.counter, "Device requests from ids without a registry row (counted, never tracked)"),
        "ecowatt_connections_refused_total": (.counter, "Connections answered 503 and closed at once, by reason (total, per_address)"),
        "ecowatt_connections_timed_out_total": (.counter, "Connections closed for a slow request, by phase (header, body)"),
        "ecowatt_rollup_refreshes_total": (.counter, "Devices whose changed hours of telemetry were rolled up again"),
        "ecowatt_telemetry_pruned_total": (.counter, "Telemetry chunks and rollups dropped past retention_raw_days / retention_rollup_days"),
        "ecowatt_devices_online": (.gauge, "Known devices heard from within device_offline_after_seconds"),
        "ecowatt_devices_known": (.gauge, "Devices with a registry row, tracked for last_seen"),
        "ecowatt_ota_active_sessions": (.gauge, "OTA sessions in progress"),
        "ecowatt_mqtt_backlog": (.gauge, "Messages waiting in the MQTT outbox"),
        "ecowatt_mqtt_connected": (.gauge, "1 while the MQTT feed is connected to its broker"),
        "ecowatt_connections_open": (.gauge, "Open HTTP connections on the device listener (the only one without operator_port)"),
        "ecowatt_operator_connections_open": (.gauge, "Open HTTP connections on the separate operator listener"),
        "ecowatt_memory_trimmed_bytes_total": (.counter, "Resident memory handed back to the kernel by the once-a-minute malloc_trim"),
        "ecowatt_database_bytes": (.gauge, "Bytes of database pages per table, its indexes included (measured every 5 minutes or less often)"),
        "ecowatt_database_file_bytes": (.gauge, "Bytes of the database file, its WAL and shared-memory file (every 5 minutes or less often)"),
        "ecowatt_retained_rows": (.gauge, "Rows kept per bounded table (and pending_devices), see the limits in the README"),
        "ecowatt_retention_dropped_rows": (.gauge, "Rows dropped by the caps per table since the database was created"),
        "ecowatt_storage_transactions": (.gauge, "Write transactions committed since start (each holds a group of writes)"),
        "ecowatt_storage_writes": (.gauge, "Writes committed since start; divided by ecowatt_storage_transactions, the group commit's batch size"),
        "ecowatt_storage_failed_transactions": (
            .gauge, "Write transactions that failed to commit since start (a full disk, an I/O error, the database unreachable): alert on its rate"
        ),
        "ecowatt_diagnostics_bytes": (.gauge, "Bytes of diagnostics files on disk"),
        "ecowatt_diagnostics_files_dropped": (
            .gauge, "Diagnostics files (PostgreSQL: entries) deleted to stay within diagnostics_total_bytes since start"
        ),
        "ecowatt_fleet_key_public": (.gauge, "1 while uploads are verified with the firmware's published default fleet key"),
        "ecowatt_held_messages_total": (
            .counter, "Boot messages from an unbound address, by kind and outcome (held, applied, discarded, dropped)"
        ),
        "ecowatt_devices_bound": (.gauge, "Devices whose unsigned requests are bound to the address of their verified uploads"),
    ]

    public let registry = PrometheusCollectorRegistry()
    private let durationBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5),
    ]
    private let counters = Mutex<[Key: Counter]>([:])
    private let histograms = Mutex<[Key: DurationHistogram]>([:])
    private let gauges = Mutex<[Key: Gauge]>([:])
    /// Values sampled when scraped (devices online, active sessions, backlogs).
    private let samplers = Mutex<[(String, @Sendable () -> Double)]>([])

    public init() {}

    /// An instrument's name and labels, hashed and compared as they are: building a joined string for every lookup
    /// took 2 % of the server's CPU in `perf` profiles of rejected uploads (three lookups per request).
    struct Key: Hashable {
        let name: String
        let dimensions: [(String, String)]

        static func == (lhs: Key, rhs: Key) -> Bool {
            lhs.name == rhs.name && lhs.dimensions.elementsEqual(rhs.dimensions) { $0.0 == $1.0 && $0.1 == $1.1 }
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(name)
            for (label, value) in dimensions {
                hasher.combine(label)
                hasher.combine(value)
            }
        }
    }

    static func descriptor(_ name: String) -> MetricNameDescriptor {
        // Debug builds (the tests) stop on an undeclared metric; a release build serves it without help text.
        assert(catalog[name] != nil, "metric \(name) is not in ServerMetrics.catalog")
        return MetricNameDescriptor(metricName: name, unitName: "", helpText: catalog[name]?.help ?? "")
    }

    /// Adds `amount` to the counter `name` with `dimensions`.
    public func increment(_ name: String, _ dimensions: [(String, String)] = [], by amount: Int = 1) {
        guard amount > 0 else { return }
        instrument(counters, name, dimensions) { registry.makeCounter(descriptor: $0, labels: dimensions) }
            .increment(by: Int64(amount))
    }

    /// Records a duration in the histogram `name`.
    public func record(_ name: String, _ dimensions: [(String, String)] = [], duration: Duration) {
        instrument(histograms, name, dimensions) {
            registry.makeDurationHistogram(descriptor: $0, labels: dimensions, buckets: durationBuckets)
        }.record(duration)
    }

    /// Sets the gauge `name` with `dimensions`.
    public func set(_ name: String, _ value: Double, _ dimensions: [(String, String)] = []) {
        instrument(gauges, name, dimensions) { registry.makeGauge(descriptor: $0, labels: dimensions) }.set(value)
    }

    /// The instrument of `name` with `dimensions` from `cache`, made (from its ``catalog`` entry) the first time.
    private func instrument<Instrument>(
        _ cache: borrowing Mutex<[Key: Instrument]>,
        _ name: String,
        _ dimensions: [(String, String)],
        make: (MetricNameDescriptor) -> Instrument
    ) -> Instrument {
        let key = Key(name: name, dimensions: dimensions)
        return cache.withLock { instruments in
            if let instrument = instruments[key] { return instrument }
            let instrument = make(Self.descriptor(name))
            instruments[key] = instrument
            return instrument
        }
    }

    /// Registers a gauge whose value is read at each scrape.
    public func sample(_ name: String, _ value: @escaping @Sendable () -> Double) {
        samplers.withLock { $0.append((name, value)) }
    }

    /// The Prometheus text exposition of every metric, with the sampled gauges refreshed first, and the process metrics.
    public func exposition() -> [UInt8] {
        for (name, value) in samplers.withLock({ $0 }) {
            set(name, value())
        }
        return registry.emitToBuffer() + Array(ProcessMetrics.exposition().utf8)
    }
}
