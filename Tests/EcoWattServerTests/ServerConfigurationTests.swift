import Configuration
import EcoWattServer
import Foundation
import Testing

@Suite struct ServerConfigurationTests {
    @Test func defaultsMatchTheFirmware() async throws {
        let configuration = try await ServerConfiguration.load(configFile: nil, environment: [:], flags: [:])
        #expect(configuration.http.host == "0.0.0.0")
        #expect(configuration.http.port == 5001)
        #expect(configuration.storage.dataDirectory == "./data")
        #expect(configuration.security.keysDirectory == "./keys")
        #expect(configuration.security.fleetKeyHex == "2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe")
        #expect(configuration.http.maxBodyBytes == 65536)
    }

    /// `serve --print-config`: every setting once, with the layer it came from, and no secret in the clear.
    @Test func printedConfigurationNamesEverySettingItsSourceAndMasksSecrets() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"port": 6000, "log_level": "debug", "limits": {"max_connections": 500}}"#.utf8).write(to: file)
        let flags: [String: ConfigValue] = ["host": "127.0.0.1"]
        let privateKey = String(repeating: "ab", count: 32)
        let text = try await ServerConfiguration.describe(
            configFile: file.path,
            environment: ["ECOWATT_LOG_LEVEL": "notice", "ECOWATT_FLEET_KEY": privateKey, "ECOWATT_MQTT_PASSWORD": "hunter2"],
            flags: flags
        )
        let lines = text.split(separator: "\n").map(String.init)
        let printedKeys = lines.map { String($0.prefix { $0 != " " }) }
        #expect(Set(printedKeys).count == printedKeys.count, "each setting once")
        for setting in ServerConfiguration.settings { #expect(printedKeys.contains(setting.key), "\(setting.key) is printed") }
        #expect(lines.contains("port = 6000  (file)"))
        #expect(lines.contains("log_level = notice  (environment)"))
        #expect(lines.contains("host = 127.0.0.1  (flag)"))
        #expect(lines.contains("durability = normal  (default)"))
        #expect(lines.contains("limits.max_connections = 500  (file)"))
        #expect(lines.contains("mqtt_password = ***  (environment)"))
        #expect(!text.contains(privateKey) && !text.contains("hunter2"))
        #expect(lines.contains { $0.hasPrefix("fleet_key = *** (fingerprint ") })
    }

    @Test func layersApplyInOrderFileEnvironmentFlags() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"port": 6000, "data_dir": "/file/data", "log_level": "debug", "durability": "full"}"#.utf8).write(to: file)
        let flags: [String: ConfigValue] = ["data_dir": "/flag/data"]
        let configuration = try await ServerConfiguration.load(
            configFile: file.path,
            environment: ["ECOWATT_PORT": "7000", "ECOWATT_DATA_DIR": "/env/data"],
            flags: flags
        )
        #expect(configuration.http.port == 7000)  // env beats file
        #expect(configuration.storage.dataDirectory == "/flag/data")  // flag beats env
        #expect(configuration.logLevel == "debug")  // file beats default
        #expect(configuration.storage.durability == .full)
        // ECOWATT_CONFIG names the file when no flag does.
        let viaEnvironment = try await ServerConfiguration.load(
            configFile: nil,
            environment: ["ECOWATT_CONFIG": file.path],
            flags: [:]
        )
        #expect(viaEnvironment.http.port == 6000)
    }

    @Test func badValuesAreRefusedWithAReason() async throws {
        await #expect(throws: ConfigurationError.invalid("ECOWATT_PORT=abc: port must be an integer")) {
            try await ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_PORT": "abc"], flags: [:])
        }
        await #expect(throws: ConfigurationError.invalid("flag: durability must be one of normal, full")) {
            try await ServerConfiguration.load(configFile: nil, environment: [:], flags: ["durability": "sometimes"])
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"prot": 6000}"#.utf8).write(to: file)
        await #expect(throws: ConfigurationError.invalid("\(file.path): unknown configuration key 'prot'")) {
            try await ServerConfiguration.load(configFile: file.path, environment: [:], flags: [:])
        }
        await #expect(throws: ConfigurationError.self) {
            try await ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_FLEET_KEY": "abcd"], flags: [:])
        }
    }

    @Test func limitsLayerLikeEveryOtherSettingAndRefuseUnknownKeysAndRanges() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"limits": {"max_pending_devices": 10, "fault_events_total": 500, "max_connections": 100}}"#.utf8).write(to: file)
        let flags: [String: ConfigValue] = ["limits.max_connections": 300]
        let configuration = try await ServerConfiguration.load(
            configFile: file.path,
            environment: ["ECOWATT_LIMITS_FAULT_EVENTS_TOTAL": "700", "ECOWATT_LIMITS_MAX_CONNECTIONS": "200"],
            flags: flags
        )
        #expect(configuration.limits.retention.maxPendingDevices == 10)  // file
        #expect(configuration.limits.retention.faultEvents.total == 700)  // env beats file
        #expect(configuration.limits.maxConnections == 300)  // flag beats env
        #expect(configuration.limits.retention.powerReports.perDevice == 300)  // default
        try Data(#"{"limits": {"max_pendng_devices": 1}}"#.utf8).write(to: file)
        await #expect(throws: ConfigurationError.self) { try await ServerConfiguration.load(configFile: file.path, environment: [:]) }
        await #expect(
            throws: ConfigurationError.invalid(
                "ECOWATT_LIMITS_MAX_CONNECTIONS_PER_ADDRESS=0: limits.max_connections_per_address must be an integer in 1...10000000"
            )
        ) {
            try await ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "0"], flags: [:])
        }
    }

    /// Values of the wrong type are refused with where they came from; a secret's value is never echoed.
    @Test func wrongTypesAreRefusedNamingTheirSourceAndSecretsAreNotEchoed() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"port": "6000"}"#.utf8).write(to: file)
        await #expect(throws: ConfigurationError.invalid("\(file.path): port must be an integer")) {
            try await ServerConfiguration.load(configFile: file.path, environment: [:])
        }
        await #expect(throws: ConfigurationError.invalid("ECOWATT_MQTT_ENABLED=maybe: mqtt_enabled must be true or false")) {
            try await ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_MQTT_ENABLED": "maybe"])
        }
        await #expect(throws: ConfigurationError.invalid("ECOWATT_FLEET_KEY: fleet_key must be at least 16 bytes of hex")) {
            try await ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_FLEET_KEY": "not-hex-secret"])
        }
        // A list is comma-separated in the environment, an array in the file; an empty variable is unset.
        let proxies = try await ServerConfiguration.load(
            configFile: nil,
            environment: ["ECOWATT_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2", "ECOWATT_PORT": ""]
        )
        #expect(proxies.http.trustedProxies == ["10.0.0.1", "10.0.0.2"] && proxies.http.port == 5001)
        try Data(#"{"trusted_proxies": ["10.1.1.1"], "mqtt_qos": 2}"#.utf8).write(to: file)
        let fromFile = try await ServerConfiguration.load(configFile: file.path, environment: [:])
        #expect(fromFile.http.trustedProxies == ["10.1.1.1"] && fromFile.mqtt.qos == 2)
    }

    /// The README's configuration reference is the declared settings: key, variable, default and help of each.
    @Test func theReadmeReferenceListsEverySettingWithItsVariableAndDefault() throws {
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("README.md"),
            encoding: .utf8
        )
        for row in ServerConfiguration.referenceRows { #expect(readme.contains(row), "README row: \(row)") }
    }

    @Test func theReadmeListsEveryLimitWithItsDefault() async throws {
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("README.md"),
            encoding: .utf8
        )
        let defaults = ServerLimits()
        for setting in ServerLimits.settings {
            let row = "| `\(setting.key)` | `\(setting.environmentName)` | \(defaults.value(setting.key)!) |"
            #expect(readme.contains(row), "README row for \(setting.key)")
        }
    }
}
