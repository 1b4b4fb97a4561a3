import EcoWattServer
import Foundation
import Testing

@Suite struct ServerConfigurationTests {
    @Test func defaultsMatchTheFirmware() throws {
        let configuration = try ServerConfiguration.load(configFile: nil, environment: [:], flags: .init())
        #expect(configuration.host == "0.0.0.0")
        #expect(configuration.port == 5001)
        #expect(configuration.dataDirectory == "./data")
        #expect(configuration.keysDirectory == "./keys")
        #expect(configuration.fleetKeyHex == "2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe")
        #expect(configuration.maxBodyBytes == 65536)
    }

    /// `serve --print-config`: every setting once, with the layer it came from, and no secret in the clear.
    @Test func printedConfigurationNamesEverySettingItsSourceAndMasksSecrets() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"port": 6000, "log_level": "debug", "limits": {"max_connections": 500}}"#.utf8).write(to: file)
        var flags = ServerConfiguration.Layer()
        flags.host = "127.0.0.1"
        let privateKey = String(repeating: "ab", count: 32)
        let text = try ServerConfiguration.describe(
            configFile: file.path,
            environment: ["ECOWATT_LOG_LEVEL": "notice", "ECOWATT_FLEET_KEY": privateKey, "ECOWATT_MQTT_PASSWORD": "hunter2"],
            flags: flags
        )
        let lines = text.split(separator: "\n").map(String.init)
        let printedKeys = lines.map { String($0.prefix { $0 != " " }) }
        #expect(Set(printedKeys).count == printedKeys.count, "each setting once")
        for key in ServerConfiguration.Layer.environmentNames.keys { #expect(printedKeys.contains(key), "\(key) is printed") }
        #expect(lines.contains("port = 6000  (file)"))
        #expect(lines.contains("log_level = notice  (environment)"))
        #expect(lines.contains("host = 127.0.0.1  (flag)"))
        #expect(lines.contains("durability = normal  (default)"))
        #expect(lines.contains("limits.max_connections = 500  (file)"))
        #expect(lines.contains("mqtt_password = ***  (environment)"))
        #expect(!text.contains(privateKey) && !text.contains("hunter2"))
        #expect(lines.contains { $0.hasPrefix("fleet_key = *** (fingerprint ") })
    }

    @Test func layersApplyInOrderFileEnvironmentFlags() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"port": 6000, "data_dir": "/file/data", "log_level": "debug", "durability": "full"}"#.utf8).write(to: file)
        var flags = ServerConfiguration.Layer()
        flags.dataDirectory = "/flag/data"
        let configuration = try ServerConfiguration.load(
            configFile: file.path,
            environment: ["ECOWATT_PORT": "7000", "ECOWATT_DATA_DIR": "/env/data"],
            flags: flags
        )
        #expect(configuration.port == 7000)  // env beats file
        #expect(configuration.dataDirectory == "/flag/data")  // flag beats env
        #expect(configuration.logLevel == "debug")  // file beats default
        #expect(configuration.durability == .full)
        // ECOWATT_CONFIG names the file when no flag does.
        let viaEnvironment = try ServerConfiguration.load(
            configFile: nil,
            environment: ["ECOWATT_CONFIG": file.path],
            flags: .init()
        )
        #expect(viaEnvironment.port == 6000)
    }

    @Test func badValuesAreRefusedWithAReason() throws {
        #expect(throws: ConfigurationError.invalid("ECOWATT_PORT=abc is not an integer")) {
            try ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_PORT": "abc"], flags: .init())
        }
        var flags = ServerConfiguration.Layer()
        flags.durability = "sometimes"
        #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(configFile: nil, environment: [:], flags: flags) }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"prot": 6000}"#.utf8).write(to: file)
        #expect(throws: ConfigurationError.invalid("\(file.path): unknown configuration key 'prot'")) {
            try ServerConfiguration.load(configFile: file.path, environment: [:], flags: .init())
        }
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_FLEET_KEY": "abcd"], flags: .init())
        }
    }

    @Test func limitsLayerLikeEveryOtherSettingAndRefuseUnknownKeysAndRanges() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"limits": {"max_pending_devices": 10, "fault_events_total": 500, "max_connections": 100}}"#.utf8).write(to: file)
        var flags = ServerConfiguration.Layer()
        flags.limits = ["max_connections": 300]
        let configuration = try ServerConfiguration.load(
            configFile: file.path,
            environment: ["ECOWATT_LIMITS_FAULT_EVENTS_TOTAL": "700", "ECOWATT_LIMITS_MAX_CONNECTIONS": "200"],
            flags: flags
        )
        #expect(configuration.limits.retention.maxPendingDevices == 10)  // file
        #expect(configuration.limits.retention.faultEvents.total == 700)  // env beats file
        #expect(configuration.limits.maxConnections == 300)  // flag beats env
        #expect(configuration.limits.retention.powerReports.perDevice == 300)  // default
        var unknown = ServerConfiguration.Layer()
        unknown.limits = ["max_pendng_devices": 1]
        #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(configFile: nil, environment: [:], flags: unknown) }
        #expect(throws: ConfigurationError.invalid("limit max_connections_per_address must be in 1...10000000")) {
            try ServerConfiguration.load(configFile: nil, environment: ["ECOWATT_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "0"], flags: .init())
        }
    }

    @Test func theReadmeListsEveryLimitWithItsDefault() throws {
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
