import EcoWattStorage

/// Every bound on what requests can make the server keep, hold open or write to its log, declared once (issue 13).
///
/// Set in the config file's `limits` object, as `ECOWATT_LIMITS_<KEY>` in the environment, or with
/// `ecowatt serve --limit key=value`. Defaults are sized for a fleet of 1 000 000 devices; the README's table is checked
/// against ``settings`` by a test.
public struct ServerLimits: Sendable, Equatable {
    /// Rows and pending devices the database keeps.
    public var retention = RetentionPolicy()
    /// Bytes of diagnostics files across all devices.
    public var diagnosticsTotalBytes = 1 << 30
    /// Devices whose nonce and decoder model ingest keeps in memory (others are read back from the store).
    ///
    /// 100 000 covers the largest fleet one 2-core server takes at the firmware's 15 s upload period (about 6 000
    /// uploads/s, so about 90 000 devices); a state costs about 1.5 KB. Measured with a million devices (issue 23):
    /// RSS 700 MB with 200 000, a device read back costs about a tenth more CPU on its upload.
    public var ingestCacheDevices = 100_000
    /// OTA downloads in progress at once; an initiate beyond it is answered 503 (the device retries next period).
    public var maxActiveOTASessions = 10_000
    /// An OTA session without a chunk or progress report for this long ends as `expired`.
    public var otaSessionIdleSeconds = 1_800
    /// Open connections in all; beyond it a connection is answered 503 and closed at once.
    public var maxConnections = 10_000
    /// Open connections from one client address.
    public var maxConnectionsPerAddress = 64
    /// A keep-alive connection without a request for this long is closed (the firmware opens one per request).
    public var idleTimeoutSeconds = 60
    /// Time from a request's first byte to its complete head.
    public var headerTimeoutSeconds = 10
    /// Time from a request's head to its last body byte.
    public var bodyTimeoutSeconds = 30
    /// Client errors (4xx), server errors (5xx) and device events are logged in full for the first few per interval,
    /// then as one summary line per interval.
    public var clientErrorLogIntervalSeconds = 60
    /// Client errors logged in full per interval before the summary takes over.
    public var clientErrorLogBurst = 20
    /// Server errors (5xx, with their causes) logged in full per interval before the summary takes over.
    public var serverErrorLogBurst = 20
    /// How long the address of a device's last verified upload binds its unsigned requests (issue 14).
    public var bindingWindowSeconds = 3_600
    /// How long a boot message from an unbound address waits for a verified upload from that address.
    public var holdWindowSeconds = 600
    /// J0 of the nonce-jump rule: an upload may be this far ahead of the last accepted nonce, plus two per second
    /// since that upload.
    public var nonceJumpAllowance = 1_024

    public init() {}

    /// One setting: its key, valid range, help text and place in ``ServerLimits``.
    public struct Setting: Sendable {
        public let key: String
        public let range: ClosedRange<Int>
        public let help: String
        let path: WritableKeyPath<ServerLimits, Int> & Sendable

        init(_ key: String, _ range: ClosedRange<Int>, _ path: WritableKeyPath<ServerLimits, Int> & Sendable, _ help: String) {
            self.key = key
            self.range = range
            self.path = path
            self.help = help
        }

        /// `ECOWATT_LIMITS_<KEY>`.
        public var environmentName: String { "ECOWATT_LIMITS_" + key.uppercased() }
    }

    public static let settings: [Setting] = [
        Setting(
            "max_pending_devices",
            1...100_000_000,
            \.retention.maxPendingDevices,
            "Device ids without a verified upload that no operator created (they registered, reported or started an OTA download); beyond it the oldest is dropped with everything it stored"
        ),
        Setting(
            "pending_rows_per_device",
            1...1000,
            \.retention.pendingRowsPerDevice,
            "Rows such a pending id keeps per table (configuration history, faults, energy, OTA events and sessions)"
        ),
        Setting(
            "retention_raw_days",
            1...36_500,
            \.retention.rawTelemetryDays,
            "Days raw telemetry and its per-minute rollups are kept after they arrived (pruned in small batches, whole chunks of up to an hour)"
        ),
        Setting("retention_rollup_days", 1...36_500, \.retention.rollupDays, "Days per-hour rollups are kept"),
        Setting("config_history_per_device", 1...100_000, \.retention.configHistory.perDevice, "Configuration events kept per device"),
        Setting("config_history_total", 1...1_000_000_000, \.retention.configHistory.total, "Configuration events kept in all"),
        Setting("fault_events_per_device", 1...1_000_000, \.retention.faultEvents.perDevice, "Fault-recovery events kept per device"),
        Setting("fault_events_total", 1...1_000_000_000, \.retention.faultEvents.total, "Fault-recovery events kept in all"),
        Setting("power_reports_per_device", 1...1_000_000, \.retention.powerReports.perDevice, "Energy reports kept per device"),
        Setting("power_reports_total", 1...1_000_000_000, \.retention.powerReports.total, "Energy reports kept in all"),
        Setting("ota_events_per_session", 1...100_000, \.retention.otaEvents.perDevice, "OTA progress events kept per session"),
        Setting("ota_events_total", 1...1_000_000_000, \.retention.otaEvents.total, "OTA progress events kept in all"),
        Setting("ota_sessions_per_device", 1...100_000, \.retention.otaSessions.perDevice, "Ended OTA sessions kept per device"),
        Setting("ota_sessions_total", 1...1_000_000_000, \.retention.otaSessions.total, "Ended OTA sessions kept in all"),
        Setting(
            "held_messages_per_device",
            1...1000,
            \.retention.heldMessages.perDevice,
            "Held boot messages (registration, completion, boot report from an unbound address) kept per device"
        ),
        Setting("held_messages_total", 1...100_000_000, \.retention.heldMessages.total, "Held boot messages kept in all"),
        Setting("diagnostics_total_bytes", 4096...(1 << 50), \.diagnosticsTotalBytes, "Bytes of diagnostics files in all; the oldest files go first"),
        Setting("ingest_cache_devices", 16...100_000_000, \.ingestCacheDevices, "Devices whose anti-replay and decoder state ingest keeps in memory"),
        Setting("max_active_ota_sessions", 1...10_000_000, \.maxActiveOTASessions, "OTA downloads in progress at once (more initiates get 503)"),
        Setting("ota_session_idle_seconds", 60...604_800, \.otaSessionIdleSeconds, "An OTA session without chunk or progress for this long expires"),
        Setting("max_connections", 16...10_000_000, \.maxConnections, "Open connections in all (more are answered 503 and closed)"),
        Setting("max_connections_per_address", 1...10_000_000, \.maxConnectionsPerAddress, "Open connections per client address"),
        Setting("idle_timeout_seconds", 1...86_400, \.idleTimeoutSeconds, "Keep-alive connection without a request"),
        Setting("header_timeout_seconds", 1...3600, \.headerTimeoutSeconds, "First byte of a request to its complete head"),
        Setting("body_timeout_seconds", 1...3600, \.bodyTimeoutSeconds, "Request head to its last body byte"),
        Setting(
            "client_error_log_interval_seconds",
            1...86_400,
            \.clientErrorLogIntervalSeconds,
            "Interval of the summary log lines of client errors, server errors and device events"
        ),
        Setting("client_error_log_burst", 0...100_000, \.clientErrorLogBurst, "Client errors logged in full per interval"),
        Setting("server_error_log_burst", 0...100_000, \.serverErrorLogBurst, "Server errors (5xx) and their causes logged in full per interval"),
        Setting(
            "binding_window_seconds",
            1_800...604_800,
            \.bindingWindowSeconds,
            "How long the address of a device's last verified upload binds its unsigned requests"
        ),
        Setting(
            "hold_window_seconds",
            60...86_400,
            \.holdWindowSeconds,
            "How long a boot message from an unbound address waits for a verified upload from that address"
        ),
        Setting(
            "nonce_jump_allowance",
            16...(1 << 32),
            \.nonceJumpAllowance,
            "How far an upload's nonce may be ahead of the last accepted one, plus 2 per second since that upload"
        ),
    ]

    public static func setting(_ key: String) -> Setting? {
        settings.first { $0.key == key }
    }

    /// The value of `key`.
    public func value(_ key: String) -> Int? {
        Self.setting(key).map { self[keyPath: $0.path] }
    }
}
