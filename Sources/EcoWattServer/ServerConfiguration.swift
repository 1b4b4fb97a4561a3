import EcoWattProtocol
import EcoWattStore
import Foundation
import MQTTBridge

/// Every setting of `ecowatt serve`, layered defaults < config file < `ECOWATT_*` environment < command-line flags.
public struct ServerConfiguration: Sendable, Equatable {
    /// Listen address (`ECOWATT_HOST`, `host`).
    public var host = "0.0.0.0"
    /// Listen port, the firmware's 5001 by default (`ECOWATT_PORT`, `port`).
    public var port = 5001
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
    public var databasePath: String { (dataDirectory as NSString).appendingPathComponent("ecowatt.sqlite") }
    /// The operator bearer token file inside ``keysDirectory``.
    public var operatorTokenPath: String { (keysDirectory as NSString).appendingPathComponent("operator_token") }

    /// One setting as it may come from a file, the environment or a flag.
    public struct Layer: Decodable, Sendable, Equatable {
        public var host: String?
        public var port: Int?
        public var dataDirectory: String?
        public var keysDirectory: String?
        public var firmwareDirectory: String?
        public var diagnosticsDirectory: String?
        public var logLevel: String?
        public var durability: String?
        public var fleetKey: String?
        public var maxBodyBytes: Int?
        public var commandResultTimeoutSeconds: Int?
        public var maxPendingCommands: Int?
        public var deviceOfflineAfterSeconds: Int?
        public var maxFirmwareBytes: Int?
        public var diagnosticsMaxFileBytes: Int?
        public var diagnosticsRetainedFiles: Int?
        public var faultInjection: Bool?
        public var mqttEnabled: Bool?
        public var mqttHost: String?
        public var mqttPort: Int?
        public var mqttClientID: String?
        public var mqttUsername: String?
        public var mqttPassword: String?
        public var mqttTLSCAFile: String?
        public var mqttTLSCertFile: String?
        public var mqttTLSKeyFile: String?
        public var mqttKeepaliveSeconds: Int?
        public var mqttQoS: Int?
        public var mqttTopicPrefix: String?
        public var mqttOutboxMaxMessages: Int?
        /// ``ServerLimits`` settings by key.
        public var limits: [String: Int]?
        public var deviceBinding: String?
        public var trustedProxies: [String]?
        public var forwardedHeader: String?

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case host, port
            case dataDirectory = "data_dir"
            case keysDirectory = "keys_dir"
            case firmwareDirectory = "firmware_dir"
            case diagnosticsDirectory = "diagnostics_dir"
            case logLevel = "log_level"
            case durability
            case fleetKey = "fleet_key"
            case maxBodyBytes = "max_body_bytes"
            case commandResultTimeoutSeconds = "command_result_timeout_seconds"
            case maxPendingCommands = "max_pending_commands"
            case deviceOfflineAfterSeconds = "device_offline_after_seconds"
            case maxFirmwareBytes = "max_firmware_bytes"
            case diagnosticsMaxFileBytes = "diagnostics_max_file_bytes"
            case diagnosticsRetainedFiles = "diagnostics_retained_files"
            case faultInjection = "fault_injection"
            case mqttEnabled = "mqtt_enabled"
            case mqttHost = "mqtt_host"
            case mqttPort = "mqtt_port"
            case mqttClientID = "mqtt_client_id"
            case mqttUsername = "mqtt_username"
            case mqttPassword = "mqtt_password"
            case mqttTLSCAFile = "mqtt_tls_ca_file"
            case mqttTLSCertFile = "mqtt_tls_cert_file"
            case mqttTLSKeyFile = "mqtt_tls_key_file"
            case mqttKeepaliveSeconds = "mqtt_keepalive_seconds"
            case mqttQoS = "mqtt_qos"
            case mqttTopicPrefix = "mqtt_topic_prefix"
            case mqttOutboxMaxMessages = "mqtt_outbox_max_messages"
            case limits
            case deviceBinding = "device_binding"
            case trustedProxies = "trusted_proxies"
            case forwardedHeader = "forwarded_header"
        }

        /// The `ECOWATT_*` variable of each key (``ServerLimits`` settings have their own, `ECOWATT_LIMITS_*`).
        public static let environmentNames: [String: String] = Dictionary(
            uniqueKeysWithValues: CodingKeys.allCases.filter { $0 != .limits }.map { ($0.rawValue, "ECOWATT_" + $0.rawValue.uppercased()) }
        )

        /// Reads the `ECOWATT_*` variables.
        public init(environment: [String: String]) throws(ConfigurationError) {
            func value(_ key: CodingKeys) -> String? {
                environment[Self.environmentNames[key.rawValue]!].flatMap { $0.isEmpty ? nil : $0 }
            }
            func boolean(_ key: CodingKeys) throws(ConfigurationError) -> Bool? {
                guard let text = value(key) else { return nil }
                guard let flag = Bool(text.lowercased()) else {
                    throw .invalid("\(Self.environmentNames[key.rawValue]!)=\(text) is not true or false")
                }
                return flag
            }
            func integer(_ key: CodingKeys) throws(ConfigurationError) -> Int? {
                guard let text = value(key) else { return nil }
                guard let number = Int(text) else {
                    throw .invalid("\(Self.environmentNames[key.rawValue]!)=\(text) is not an integer")
                }
                return number
            }
            host = value(.host)
            port = try integer(.port)
            dataDirectory = value(.dataDirectory)
            keysDirectory = value(.keysDirectory)
            firmwareDirectory = value(.firmwareDirectory)
            diagnosticsDirectory = value(.diagnosticsDirectory)
            logLevel = value(.logLevel)
            durability = value(.durability)
            fleetKey = value(.fleetKey)
            maxBodyBytes = try integer(.maxBodyBytes)
            commandResultTimeoutSeconds = try integer(.commandResultTimeoutSeconds)
            maxPendingCommands = try integer(.maxPendingCommands)
            deviceOfflineAfterSeconds = try integer(.deviceOfflineAfterSeconds)
            maxFirmwareBytes = try integer(.maxFirmwareBytes)
            diagnosticsMaxFileBytes = try integer(.diagnosticsMaxFileBytes)
            diagnosticsRetainedFiles = try integer(.diagnosticsRetainedFiles)
            faultInjection = try boolean(.faultInjection)
            mqttEnabled = try boolean(.mqttEnabled)
            mqttHost = value(.mqttHost)
            mqttPort = try integer(.mqttPort)
            mqttClientID = value(.mqttClientID)
            mqttUsername = value(.mqttUsername)
            mqttPassword = value(.mqttPassword)
            mqttTLSCAFile = value(.mqttTLSCAFile)
            mqttTLSCertFile = value(.mqttTLSCertFile)
            mqttTLSKeyFile = value(.mqttTLSKeyFile)
            mqttKeepaliveSeconds = try integer(.mqttKeepaliveSeconds)
            mqttQoS = try integer(.mqttQoS)
            mqttTopicPrefix = value(.mqttTopicPrefix)
            mqttOutboxMaxMessages = try integer(.mqttOutboxMaxMessages)
            var limits: [String: Int] = [:]
            for setting in ServerLimits.settings {
                guard let text = environment[setting.environmentName], !text.isEmpty else { continue }
                guard let number = Int(text) else { throw .invalid("\(setting.environmentName)=\(text) is not an integer") }
                limits[setting.key] = number
            }
            self.limits = limits.isEmpty ? nil : limits
            deviceBinding = value(.deviceBinding)
            trustedProxies = value(.trustedProxies).map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            forwardedHeader = value(.forwardedHeader)
        }

        public init(from decoder: any Decoder) throws {
            let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
                .filter { CodingKeys(rawValue: $0) == nil }
            if let key = unknown.first {
                throw ConfigurationError.invalid("unknown configuration key '\(key)'")
            }
            let container = try decoder.container(keyedBy: CodingKeys.self)
            host = try container.decodeIfPresent(String.self, forKey: .host)
            port = try container.decodeIfPresent(Int.self, forKey: .port)
            dataDirectory = try container.decodeIfPresent(String.self, forKey: .dataDirectory)
            keysDirectory = try container.decodeIfPresent(String.self, forKey: .keysDirectory)
            firmwareDirectory = try container.decodeIfPresent(String.self, forKey: .firmwareDirectory)
            diagnosticsDirectory = try container.decodeIfPresent(String.self, forKey: .diagnosticsDirectory)
            logLevel = try container.decodeIfPresent(String.self, forKey: .logLevel)
            durability = try container.decodeIfPresent(String.self, forKey: .durability)
            fleetKey = try container.decodeIfPresent(String.self, forKey: .fleetKey)
            maxBodyBytes = try container.decodeIfPresent(Int.self, forKey: .maxBodyBytes)
            commandResultTimeoutSeconds = try container.decodeIfPresent(Int.self, forKey: .commandResultTimeoutSeconds)
            maxPendingCommands = try container.decodeIfPresent(Int.self, forKey: .maxPendingCommands)
            deviceOfflineAfterSeconds = try container.decodeIfPresent(Int.self, forKey: .deviceOfflineAfterSeconds)
            maxFirmwareBytes = try container.decodeIfPresent(Int.self, forKey: .maxFirmwareBytes)
            diagnosticsMaxFileBytes = try container.decodeIfPresent(Int.self, forKey: .diagnosticsMaxFileBytes)
            diagnosticsRetainedFiles = try container.decodeIfPresent(Int.self, forKey: .diagnosticsRetainedFiles)
            faultInjection = try container.decodeIfPresent(Bool.self, forKey: .faultInjection)
            mqttEnabled = try container.decodeIfPresent(Bool.self, forKey: .mqttEnabled)
            mqttHost = try container.decodeIfPresent(String.self, forKey: .mqttHost)
            mqttPort = try container.decodeIfPresent(Int.self, forKey: .mqttPort)
            mqttClientID = try container.decodeIfPresent(String.self, forKey: .mqttClientID)
            mqttUsername = try container.decodeIfPresent(String.self, forKey: .mqttUsername)
            mqttPassword = try container.decodeIfPresent(String.self, forKey: .mqttPassword)
            mqttTLSCAFile = try container.decodeIfPresent(String.self, forKey: .mqttTLSCAFile)
            mqttTLSCertFile = try container.decodeIfPresent(String.self, forKey: .mqttTLSCertFile)
            mqttTLSKeyFile = try container.decodeIfPresent(String.self, forKey: .mqttTLSKeyFile)
            mqttKeepaliveSeconds = try container.decodeIfPresent(Int.self, forKey: .mqttKeepaliveSeconds)
            mqttQoS = try container.decodeIfPresent(Int.self, forKey: .mqttQoS)
            mqttTopicPrefix = try container.decodeIfPresent(String.self, forKey: .mqttTopicPrefix)
            mqttOutboxMaxMessages = try container.decodeIfPresent(Int.self, forKey: .mqttOutboxMaxMessages)
            limits = try container.decodeIfPresent([String: Int].self, forKey: .limits)
            deviceBinding = try container.decodeIfPresent(String.self, forKey: .deviceBinding)
            trustedProxies = try container.decodeIfPresent([String].self, forKey: .trustedProxies)
            forwardedHeader = try container.decodeIfPresent(String.self, forKey: .forwardedHeader)
        }

        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
    }

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
