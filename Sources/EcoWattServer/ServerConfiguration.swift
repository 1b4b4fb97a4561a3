import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation
import MQTTBridge

/// Every setting of `ecowatt serve`, layered defaults < config file < `ECOWATT_*` environment < command-line flags.
public struct ServerConfiguration: Sendable, Equatable {
    /// Listen address (`ECOWATT_HOST`, `host`).
    public var host = "0.0.0.0"
    /// Listen port, the firmware's 5001 by default (`ECOWATT_PORT`, `port`).
    public var port = 5001
    /// Operator listener address (`ECOWATT_OPERATOR_HOST`, `operator_host`); with ``operatorPort``, the operator API
    /// moves off the device port.
    public var operatorHost = "127.0.0.1"
    /// Operator listener port (`ECOWATT_OPERATOR_PORT`, `operator_port`); `nil`: operator routes on the device port.
    public var operatorPort: Int? = nil
    /// TLS certificate chain (PEM) for the operator listener, or the only listener without one
    /// (`ECOWATT_TLS_CERT_FILE`, `tls_cert_file`); reloaded on SIGHUP.
    public var tlsCertFile: String? = nil
    /// TLS private key (PEM) (`ECOWATT_TLS_KEY_FILE`, `tls_key_file`).
    public var tlsKeyFile: String? = nil
    /// Directory of the SQLite database (`ECOWATT_DATA_DIR`, `data_dir`).
    public var dataDirectory = "./data"
    /// Keys directory: operator token, firmware keys (`ECOWATT_KEYS_DIR`, `keys_dir`).
    public var keysDirectory = "./keys"
    /// Prepared firmware images (`ECOWATT_FIRMWARE_DIR`, `firmware_dir`).
    public var firmwareDirectory = "./firmware"
    /// Diagnostics JSONL files (`ECOWATT_DIAGNOSTICS_DIR`, `diagnostics_dir`).
    public var diagnosticsDirectory = "./diagnostics_data"
    /// `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical` (`ECOWATT_LOG_LEVEL`, `log_level`).
    public var logLevel = "info"
    /// `normal` or `full` (`ECOWATT_DURABILITY`, `durability`).
    public var durability = Durability.normal
    /// Fleet HMAC key as hex; the firmware's built-in key by default (`ECOWATT_FLEET_KEY`, `fleet_key`).
    public var fleetKeyHex = FleetKey.firmwareDefaultHex
    /// Largest accepted request body in bytes (`ECOWATT_MAX_BODY_BYTES`, `max_body_bytes`).
    public var maxBodyBytes = 64 * 1024
    /// A dispatched command without a result after this many seconds becomes `timed_out`
    /// (`ECOWATT_COMMAND_RESULT_TIMEOUT_SECONDS`, `command_result_timeout_seconds`).
    public var commandResultTimeoutSeconds = 60
    /// Most pending commands per device (`ECOWATT_MAX_PENDING_COMMANDS`, `max_pending_commands`).
    public var maxPendingCommands = 100
    /// A device is `offline` when not heard from for this many seconds
    /// (`ECOWATT_DEVICE_OFFLINE_AFTER_SECONDS`, `device_offline_after_seconds`).
    public var deviceOfflineAfterSeconds = 120
    /// Largest firmware image accepted by `POST /ota/upload` (`ECOWATT_MAX_FIRMWARE_BYTES`, `max_firmware_bytes`).
    public var maxFirmwareBytes = 8 * 1024 * 1024
    /// A diagnostics file is rotated before it grows past this (`ECOWATT_DIAGNOSTICS_MAX_FILE_BYTES`,
    /// `diagnostics_max_file_bytes`).
    public var diagnosticsMaxFileBytes = 4 * 1024 * 1024
    /// Rotated diagnostics files kept per device (`ECOWATT_DIAGNOSTICS_RETAINED_FILES`, `diagnostics_retained_files`).
    public var diagnosticsRetainedFiles = 5
    /// Enables the operator fault-injection routes (`ECOWATT_FAULT_INJECTION`, `fault_injection`: `true`/`false`).
    public var faultInjection = false
    /// Forward decoded telemetry to the MQTT broker (`ECOWATT_MQTT_ENABLED`, `mqtt_enabled`).
    public var mqttEnabled: Bool = true
    /// Broker host (`ECOWATT_MQTT_HOST`, `mqtt_host`).
    public var mqttHost: String = "127.0.0.1"
    /// Broker port (`ECOWATT_MQTT_PORT`, `mqtt_port`).
    public var mqttPort: Int = 1883
    /// MQTT client id (`ECOWATT_MQTT_CLIENT_ID`, `mqtt_client_id`).
    public var mqttClientID: String = "ecowatt-cloud"
    /// Broker user name (`ECOWATT_MQTT_USERNAME`, `mqtt_username`).
    public var mqttUsername: String? = nil
    /// Broker password (`ECOWATT_MQTT_PASSWORD`, `mqtt_password`).
    public var mqttPassword: String? = nil
    /// TLS: CA certificate file (enables TLS) (`ECOWATT_MQTT_TLS_CA_FILE`, `mqtt_tls_ca_file`).
    public var mqttTLSCAFile: String? = nil
    /// TLS: client certificate file (`ECOWATT_MQTT_TLS_CERT_FILE`, `mqtt_tls_cert_file`).
    public var mqttTLSCertFile: String? = nil
    /// TLS: client key file (`ECOWATT_MQTT_TLS_KEY_FILE`, `mqtt_tls_key_file`).
    public var mqttTLSKeyFile: String? = nil
    /// MQTT keepalive (`ECOWATT_MQTT_KEEPALIVE_SECONDS`, `mqtt_keepalive_seconds`).
    public var mqttKeepaliveSeconds: Int = 60
    /// QoS of published messages (0, 1 or 2) (`ECOWATT_MQTT_QOS`, `mqtt_qos`).
    public var mqttQoS: Int = 1
    /// Topic prefix; messages go to {prefix}/{device_id} (`ECOWATT_MQTT_TOPIC_PREFIX`, `mqtt_topic_prefix`).
    public var mqttTopicPrefix: String = "ecowatt/data"
    /// Most messages waiting in the outbox (`ECOWATT_MQTT_OUTBOX_MAX_MESSAGES`, `mqtt_outbox_max_messages`).
    public var mqttOutboxMaxMessages: Int = 1_000_000
    /// Caps on stored rows, memory, connections and logging (`limits` object, `ECOWATT_LIMITS_*`, `--limit key=value`).
    public var limits = ServerLimits()
    /// `address` or `off` (`ECOWATT_DEVICE_BINDING`, `device_binding`): unsigned device requests honoured only from the
    /// address of the device's verified uploads.
    public var deviceBinding = DeviceBinding.Policy.address
    /// Reverse proxies whose forwarded client address is believed (`ECOWATT_TRUSTED_PROXIES`, comma-separated;
    /// `trusted_proxies`, a list).
    public var trustedProxies: [String] = []
    /// The header a trusted proxy puts the client address in (`ECOWATT_FORWARDED_HEADER`, `forwarded_header`).
    public var forwardedHeader = "X-Forwarded-For"

    public init() {}

    /// The SQLite file inside ``dataDirectory``.
    public var databasePath: String { EcoWattDatabase.path(inDirectory: dataDirectory) }
    /// The operator bearer token file inside ``keysDirectory``.
    public var operatorTokenPath: String { (keysDirectory as NSString).appendingPathComponent("operator_token") }

    /// Applies one layer on top of this configuration, validating every value it sets.
    public mutating func apply(_ layer: Layer) throws(ConfigurationError) {
        if let host = layer.host { self.host = host }
        if let port = layer.port {
            guard (0...65535).contains(port) else { throw .invalid("port \(port) outside 0...65535") }
            self.port = port
        }
        if let value = layer.dataDirectory { dataDirectory = value }
        if let value = layer.keysDirectory { keysDirectory = value }
        if let value = layer.firmwareDirectory { firmwareDirectory = value }
        if let value = layer.diagnosticsDirectory { diagnosticsDirectory = value }
        if let value = layer.logLevel {
            guard Self.logLevels.contains(value.lowercased()) else {
                throw .invalid("log_level '\(value)' is not one of \(Self.logLevels.joined(separator: ", "))")
            }
            logLevel = value.lowercased()
        }
        if let value = layer.durability {
            guard let durability = Durability(rawValue: value.lowercased()) else {
                throw .invalid("durability '\(value)' is not 'normal' or 'full'")
            }
            self.durability = durability
        }
        if let value = layer.fleetKey {
            guard let key = HexCoding.decode(value), key.count >= 16 else {
                throw .invalid("fleet_key must be at least 16 bytes of hex")
            }
            fleetKeyHex = HexCoding.encode(key)
        }
        if let value = layer.maxBodyBytes {
            guard value >= 8192 else { throw .invalid("max_body_bytes must be at least 8192 (the device sends up to 8191)") }
            maxBodyBytes = value
        }
        if let value = layer.commandResultTimeoutSeconds {
            guard (5...86_400).contains(value) else { throw .invalid("command_result_timeout_seconds must be in 5...86400") }
            commandResultTimeoutSeconds = value
        }
        if let value = layer.maxPendingCommands {
            guard (1...10_000).contains(value) else { throw .invalid("max_pending_commands must be in 1...10000") }
            maxPendingCommands = value
        }
        if let value = layer.deviceOfflineAfterSeconds {
            guard (10...86_400).contains(value) else { throw .invalid("device_offline_after_seconds must be in 10...86400") }
            deviceOfflineAfterSeconds = value
        }
        if let value = layer.maxFirmwareBytes {
            guard (4096...(16 << 20)).contains(value) else { throw .invalid("max_firmware_bytes must be in 4096...16777216") }
            maxFirmwareBytes = value
        }
        if let value = layer.diagnosticsMaxFileBytes {
            guard (1024...(1 << 30)).contains(value) else { throw .invalid("diagnostics_max_file_bytes must be in 1024...1073741824") }
            diagnosticsMaxFileBytes = value
        }
        if let value = layer.diagnosticsRetainedFiles {
            guard (0...100).contains(value) else { throw .invalid("diagnostics_retained_files must be in 0...100") }
            diagnosticsRetainedFiles = value
        }
        if let value = layer.faultInjection { faultInjection = value }
        if let value = layer.mqttEnabled { mqttEnabled = value }
        if let value = layer.mqttHost {
            guard !value.isEmpty else { throw .invalid("mqtt_host must not be empty") }
            mqttHost = value
        }
        if let value = layer.mqttPort {
            guard (1...65535).contains(value) else { throw .invalid("mqtt_port must be in 1...65535") }
            mqttPort = value
        }
        if let value = layer.mqttClientID {
            guard (1...128).contains(value.utf8.count) else { throw .invalid("mqtt_client_id must be 1-128 bytes") }
            mqttClientID = value
        }
        if let value = layer.mqttUsername { mqttUsername = value }
        if let value = layer.mqttPassword { mqttPassword = value }
        if let value = layer.mqttTLSCAFile { mqttTLSCAFile = value }
        if let value = layer.mqttTLSCertFile { mqttTLSCertFile = value }
        if let value = layer.mqttTLSKeyFile { mqttTLSKeyFile = value }
        if let value = layer.mqttKeepaliveSeconds {
            guard (5...3600).contains(value) else { throw .invalid("mqtt_keepalive_seconds must be in 5...3600") }
            mqttKeepaliveSeconds = value
        }
        if let value = layer.mqttQoS {
            guard (0...2).contains(value) else { throw .invalid("mqtt_qos must be 0, 1 or 2") }
            mqttQoS = value
        }
        if let value = layer.mqttTopicPrefix {
            guard !value.isEmpty, !value.contains("+"), !value.contains("#"), !value.hasSuffix("/") else {
                throw .invalid("mqtt_topic_prefix must be a topic without wildcards or a trailing /")
            }
            mqttTopicPrefix = value
        }
        if let value = layer.mqttOutboxMaxMessages {
            guard (1...100_000_000).contains(value) else { throw .invalid("mqtt_outbox_max_messages must be in 1...100000000") }
            mqttOutboxMaxMessages = value
        }
        for (key, value) in (layer.limits ?? [:]).sorted(by: { $0.key < $1.key }) {
            try limits.set(key, value)
        }
        if let value = layer.deviceBinding {
            guard let policy = DeviceBinding.Policy(rawValue: value.lowercased()) else {
                throw .invalid("device_binding '\(value)' is not 'address' or 'off'")
            }
            deviceBinding = policy
        }
        if let value = layer.trustedProxies {
            guard value.allSatisfy({ !$0.isEmpty && !$0.contains(" ") }) else { throw .invalid("trusted_proxies must be IP addresses") }
            trustedProxies = value
        }
        if let value = layer.operatorHost {
            guard !value.isEmpty, !value.contains(" ") else { throw .invalid("operator_host must be an address") }
            operatorHost = value
        }
        if let value = layer.operatorPort {
            guard (1...65535).contains(value) else { throw .invalid("operator_port must be in 1...65535") }
            operatorPort = value
        }
        if let value = layer.tlsCertFile { tlsCertFile = value }
        if let value = layer.tlsKeyFile { tlsKeyFile = value }
        if let value = layer.forwardedHeader {
            guard !value.isEmpty, !value.contains(":"), !value.contains(" ") else { throw .invalid("forwarded_header must be a header name") }
            forwardedHeader = value
        }
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Builds the effective configuration: defaults, then the JSON config file (`configFile` or `ECOWATT_CONFIG`),
    /// then the environment, then `flags`.
    public static func load(
        configFile: String?,
        environment: [String: String],
        flags: Layer
    ) throws(ConfigurationError) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        if let path = configFile ?? environment["ECOWATT_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .invalid("cannot read config file \(path)")
            }
            do {
                try configuration.apply(try JSONDecoder().decode(Layer.self, from: data))
            } catch let error as ConfigurationError {
                throw .invalid("\(path): \(error.message)")
            } catch {
                throw .invalid("\(path): not a valid JSON configuration (\(error))")
            }
        }
        try configuration.apply(try Layer(environment: environment))
        try configuration.apply(flags)
        return configuration
    }
}

/// A configuration value that cannot be used.
public enum ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)

    public var message: String {
        switch self {
        case .invalid(let message): message
        }
    }
    public var description: String { message }
}

extension ServerConfiguration {
    /// The MQTT feed settings.
    public var mqtt: MQTTPublisher.Configuration {
        var feed = MQTTPublisher.Configuration()
        feed.enabled = mqttEnabled
        feed.client.host = mqttHost
        feed.client.port = mqttPort
        feed.client.clientID = mqttClientID
        feed.client.username = mqttUsername
        feed.client.password = mqttPassword
        feed.client.caFile = mqttTLSCAFile
        feed.client.certFile = mqttTLSCertFile
        feed.client.keyFile = mqttTLSKeyFile
        feed.client.keepaliveSeconds = mqttKeepaliveSeconds
        feed.qos = Int32(mqttQoS)
        feed.topicPrefix = mqttTopicPrefix
        feed.outboxLimit = mqttOutboxMaxMessages
        return feed
    }
}
