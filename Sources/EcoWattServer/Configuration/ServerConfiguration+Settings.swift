import EcoWattProtocol
import Foundation

extension ServerConfiguration {
    /// Every setting, once. The README's configuration reference is checked against this list by a test.
    public static let settings: [Setting] =
        httpSettings + storageSettings + securitySettings + accountSettings + dashboardSettings + deviceSettings + mqttSettings + operationSettings
        + limitSettings

    static let httpSettings: [Setting] = [
        .text("host", \.http.host, "Listen address"),
        .integer("port", \.http.port, 0...65535, "Listen port (the firmware's; 0 picks a free one)"),
        .text(
            "operator_host",
            \.http.operatorHost,
            "Operator listener address (with `operator_port`)",
            rule: "an address",
            normalise: { $0.isEmpty || $0.contains(" ") ? nil : $0 }
        ),
        .port(
            "operator_port",
            \.http.operatorPort,
            "Serve the operator API (and health) on this port only; the device port then serves device routes and health"
        ),
        .optionalText(
            "tls_cert_file",
            \.http.tlsCertFile,
            "PEM certificate chain: TLS (1.2+) on the operator listener, or on the only listener without `operator_port`; reloaded on SIGHUP"
        ),
        .optionalText("tls_key_file", \.http.tlsKeyFile, "PEM private key of `tls_cert_file`"),
        .integer(
            "max_body_bytes",
            \.http.maxBodyBytes,
            8192...(64 << 20),
            "Largest request body (≥ 8192; the device sends ≤ 8191)"
        ),
        .list(
            "trusted_proxies",
            \.http.trustedProxies,
            "Addresses of reverse proxies (comma-separated in the environment, a JSON array in the file) whose `forwarded_header` gives the client address",
            rule: "IP addresses",
            valid: { !$0.contains(" ") }
        ),
        .text(
            "forwarded_header",
            \.http.forwardedHeader,
            "The header a trusted proxy sets; the rightmost entry that is not itself a trusted proxy is the client",
            rule: "a header name",
            normalise: { $0.isEmpty || $0.contains(":") || $0.contains(" ") ? nil : $0 }
        ),
    ]

    static let storageSettings: [Setting] = [
        .text(
            "data_dir",
            \.storage.dataDirectory,
            "SQLite database directory (`ecowatt.sqlite`); the instance's own files (lock, audit head) with PostgreSQL"
        ),
        .optionalText(
            "database_url",
            \.storage.databaseURL,
            "PostgreSQL instead of SQLite: `postgres://user:password@host:port/database?sslmode=disable|prefer|require`; several instances may share it",
            isSecret: true
        ),
        .integer("database_connections", \.storage.databaseConnections, 1...1000, "Connections to PostgreSQL per instance at most"),
        .choice(
            "durability",
            \.storage.durability,
            "`normal`: WAL + `synchronous=NORMAL` (an acknowledged upload survives a killed process); `full`: fsync every group commit (survives power loss)"
        ),
    ]

    static let securitySettings: [Setting] = [
        .text(
            "keys_dir",
            \.security.keysDirectory,
            "Operator token and FOTA keys (`server_private_key.pem`, `server_public_key.pem`, `aes_firmware_key.bin`)"
        ),
        fleetKey,
        .choice(
            "device_binding",
            \.security.deviceBinding,
            "`address`: a device's unsigned requests are honoured from the address of its verified uploads only; `off`: from anywhere"
        ),
        .choice(
            "device_admission",
            \.security.deviceAdmission,
            "`open`: uploads from any id signed with the fleet key are accepted and the device registered; `known`: only provisioned or accepted devices (others get 403 and are listed as pending)"
        ),
    ]

    static let dashboardSettings: [Setting] = [
        .text(
            "dashboard_chartjs_file",
            \.dashboard.chartJSFile,
            "Chart.js 3 file served to the dashboard (Debian's `libjs-chart.js`); without it the pages show tables"
        ),
        .integer("max_event_streams", \.dashboard.maxEventStreams, 1...10_000, "Live dashboard streams open at once; more get 429"),
        .integer(
            "event_log_devices",
            \.dashboard.eventLogDevices,
            1...1_000_000,
            "Device ids whose latest security events, decode failures and failed updates are kept (in memory) for the dashboard"
        ),
    ]

    static let accountSettings: [Setting] = [
        .integer("password_cost", \.accounts.passwordCost, 12...16, "bcrypt cost of operator passwords (12: about 0.25 s of one core per hash)"),
        .integer(
            "password_max_queued",
            \.accounts.maxQueuedHashes,
            0...1000,
            "Logins waiting for the single hashing thread; beyond it 429 (a login flood never takes more than one core)"
        ),
        .integer(
            "password_hash_share",
            \.accounts.hashSharePercent,
            5...100,
            "Most of one core the hashing thread uses, in percent: it rests after each hash (a single login is not slower)"
        ),
        .integer(
            "login_refusal_delay_ms",
            \.accounts.loginRefusalDelayMs,
            0...10_000,
            "A login refused with 429 (throttled, or the hashing queue full) is answered this late (at most its Retry-After): a flood that waits for answers slows to one try per connection per delay"
        ),
        .integer("session_idle_minutes", \.accounts.sessionIdleMinutes, 1...10_080, "A browser session unused this long ends"),
        .integer("session_max_hours", \.accounts.sessionMaxHours, 1...720, "A browser session ends this long after login, whatever its use"),
        .integer("max_sessions_per_user", \.accounts.maxSessionsPerUser, 1...1000, "Sessions kept per user (the oldest end first)"),
        .integer("max_tokens_per_user", \.accounts.maxTokensPerUser, 1...1000, "Live API tokens per user"),
        .optionalText(
            "audit_head_file",
            \.accounts.auditHeadFile,
            "File the audit chain's head is appended to, outside the database (default `audit_head.log` in `data_dir`)"
        ),
    ]

    static let deviceSettings: [Setting] = [
        .integer(
            "device_offline_after_seconds",
            \.devices.offlineAfterSeconds,
            10...86_400,
            "A device not heard from for this long is listed `offline`"
        ),
        .integer(
            "command_result_timeout_seconds",
            \.commands.resultTimeoutSeconds,
            5...86_400,
            "A dispatched command with no result after this long becomes `timed_out`"
        ),
        .integer("max_pending_commands", \.commands.maxPending, 1...10_000, "Pending commands per device before queueing answers 429"),
        .integer(
            "command_default_ttl_seconds",
            \.commands.defaultTTLSeconds,
            60...2_592_000,
            "A command queued without `ttl_seconds` or `expires_at` expires after this long"
        ),
        .text("firmware_dir", \.ota.firmwareDirectory, "Prepared firmware images"),
        .integer("max_firmware_bytes", \.ota.maxFirmwareBytes, 4096...(16 << 20), "Largest image `POST /api/v1/firmwares` accepts"),
        .text("diagnostics_dir", \.diagnostics.directory, "Diagnostics JSONL"),
        .integer(
            "diagnostics_max_file_bytes",
            \.diagnostics.maxFileBytes,
            1024...(1 << 30),
            "A device's diagnostics file is rotated before it grows past this"
        ),
        .integer(
            "diagnostics_retained_files",
            \.diagnostics.retainedFiles,
            0...100,
            "Rotated diagnostics files kept per device (older ones are deleted)"
        ),
    ]

    static let mqttSettings: [Setting] = [
        .flag("mqtt_enabled", \.mqtt.enabled, "Forward decoded telemetry to MQTT"),
        .text("mqtt_host", \.mqtt.client.host, "Broker host"),
        .integer("mqtt_port", \.mqtt.client.port, 1...65535, "Broker port"),
        .text(
            "mqtt_client_id",
            \.mqtt.client.clientID,
            "MQTT client id (one per instance: with `database_url` and the default id, the instance adds its host name and port)",
            rule: "1-128 bytes",
            normalise: { (1...128).contains($0.utf8.count) ? $0 : nil }
        ),
        .optionalText("mqtt_username", \.mqtt.client.username, "Broker user name"),
        .optionalText("mqtt_password", \.mqtt.client.password, "Broker password", isSecret: true),
        .optionalText("mqtt_tls_ca_file", \.mqtt.client.caFile, "CA certificate file (enables TLS to the broker)"),
        .optionalText("mqtt_tls_cert_file", \.mqtt.client.certFile, "Client certificate file"),
        .optionalText("mqtt_tls_key_file", \.mqtt.client.keyFile, "Client key file"),
        .integer("mqtt_keepalive_seconds", \.mqtt.client.keepaliveSeconds, 5...3600, "MQTT keepalive"),
        .integer("mqtt_qos", \.mqttQoS, 0...2, "QoS of the published messages"),
        .text(
            "mqtt_topic_prefix",
            \.mqtt.topicPrefix,
            "Messages go to `{prefix}/{device_id}`",
            rule: "a topic without wildcards or a trailing /",
            normalise: { $0.isEmpty || $0.contains("+") || $0.contains("#") || $0.hasSuffix("/") ? nil : $0 }
        ),
        .text(
            "mqtt_events_prefix",
            \.mqtt.eventsPrefix,
            "Operational events (rollout halted, advanced, completed) go to `{prefix}/rollouts`, QoS 0",
            rule: "a topic without wildcards or a trailing /",
            normalise: { $0.isEmpty || $0.contains("+") || $0.contains("#") || $0.hasSuffix("/") ? nil : $0 }
        ),
        .integer(
            "mqtt_outbox_max_messages",
            \.mqtt.outboxLimit,
            1...100_000_000,
            "Outbox cap: beyond it new uploads are stored but not forwarded (counted as dropped)"
        ),
    ]

    static let operationSettings: [Setting] = [
        .text(
            "log_level",
            \.logLevel,
            "`trace` … `critical`; request lines are logged at `debug`, client errors (4xx) at `notice` through a rate limit",
            rule: "one of \(logLevels.joined(separator: ", "))",
            normalise: { logLevels.contains($0.lowercased()) ? $0.lowercased() : nil }
        ),
        .flag("fault_injection", \.faultInjection, "Enables the operator fault-injection routes (test rigs only)"),
    ]

    static let limitSettings: [Setting] = ServerLimits.settings.map { limit in
        .integer("limits." + limit.key, \.limits[limit: limit.key], limit.range, limit.help)
    }

    /// The fleet HMAC key as hex, at least 16 bytes; shown by its fingerprint, or as the public firmware default.
    static let fleetKey = Setting(
        key: "fleet_key",
        help:
            "Fleet HMAC key, hex (≥ 16 bytes); the firmware's public key by default. There is deliberately no flag, so the key never appears in `ps`",
        rule: "at least 16 bytes of hex",
        type: .string,
        isSecret: true
    ) { (configuration, content) throws(ConfigurationError) in
        guard case .string(let text) = content, let key = HexCoding.decode(text), key.count >= 16 else {
            throw .invalid("fleet_key must be at least 16 bytes of hex")
        }
        configuration.security.fleetKeyHex = HexCoding.encode(key)
    } show: { configuration in
        let notice = FleetKeyNotice(keyHex: configuration.security.fleetKeyHex)
        return notice.isPublic ? "firmware default (public)" : "*** (fingerprint \(notice.fingerprint))"
    }

    /// The MQTT QoS as the settings see it (the client takes an `Int32`).
    var mqttQoS: Int {
        get { Int(mqtt.qos) }
        set { mqtt.qos = Int32(newValue) }
    }
}

extension ServerLimits {
    /// A limit by key, for the settings list (the key is always one of ``settings``).
    subscript(limit key: String) -> Int {
        get { value(key)! }
        set { self[keyPath: Self.setting(key)!.path] = newValue }
    }
}
