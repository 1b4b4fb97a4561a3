import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation
import MQTTBridge

extension ServerConfiguration {
    /// One setting as it may come from a file, the environment or a flag.
    public struct Layer: Codable, Sendable, Equatable {
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
        public var operatorHost: String?
        public var operatorPort: Int?
        public var tlsCertFile: String?
        public var tlsKeyFile: String?

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
            case operatorHost = "operator_host"
            case operatorPort = "operator_port"
            case tlsCertFile = "tls_cert_file"
            case tlsKeyFile = "tls_key_file"
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
            operatorHost = value(.operatorHost)
            operatorPort = try integer(.operatorPort)
            tlsCertFile = value(.tlsCertFile)
            tlsKeyFile = value(.tlsKeyFile)
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
            operatorHost = try container.decodeIfPresent(String.self, forKey: .operatorHost)
            operatorPort = try container.decodeIfPresent(Int.self, forKey: .operatorPort)
            tlsCertFile = try container.decodeIfPresent(String.self, forKey: .tlsCertFile)
            tlsKeyFile = try container.decodeIfPresent(String.self, forKey: .tlsKeyFile)
        }

        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
    }
}
