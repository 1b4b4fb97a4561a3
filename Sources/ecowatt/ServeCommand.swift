import ArgumentParser
import Configuration
import EcoWattServer
import Foundation
import Hummingbird
import Logging
import NIOCore

/// `ecowatt serve`: runs the server until SIGINT/SIGTERM, then shuts down gracefully.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the EcoWatt Cloud server.",
        discussion: """
            Settings are layered: built-in defaults < --config FILE (JSON) < ECOWATT_* environment < flags.
            """
    )

    @Option(help: "JSON configuration file (env ECOWATT_CONFIG).") var config: String?
    @Option(help: "Listen address (env ECOWATT_HOST, default 0.0.0.0).") var host: String?
    @Option(help: "Listen port (env ECOWATT_PORT, default 5001).") var port: Int?
    @Option(help: "Operator listener address with --operator-port (env ECOWATT_OPERATOR_HOST, default 127.0.0.1).")
    var operatorHost: String?
    @Option(help: "Serve the operator API on this port only, not on the device port (env ECOWATT_OPERATOR_PORT).")
    var operatorPort: Int?
    @Option(help: "TLS certificate chain, PEM (env ECOWATT_TLS_CERT_FILE); reloaded on SIGHUP.") var tlsCertFile: String?
    @Option(help: "TLS private key, PEM (env ECOWATT_TLS_KEY_FILE).") var tlsKeyFile: String?
    @Option(help: "Database directory (env ECOWATT_DATA_DIR, default ./data).") var dataDir: String?
    @Option(help: "Keys directory (env ECOWATT_KEYS_DIR, default ./keys).") var keysDir: String?
    @Option(help: "Firmware directory (env ECOWATT_FIRMWARE_DIR, default ./firmware).") var firmwareDir: String?
    @Option(help: "Diagnostics directory (env ECOWATT_DIAGNOSTICS_DIR, default ./diagnostics_data).")
    var diagnosticsDir: String?
    @Option(help: "trace|debug|info|notice|warning|error|critical (env ECOWATT_LOG_LEVEL, default info).")
    var logLevel: String?
    @Option(help: "normal (WAL, synchronous=NORMAL) or full (fsync per group commit) (env ECOWATT_DURABILITY).")
    var durability: String?
    @Option(help: "Largest request body in bytes (env ECOWATT_MAX_BODY_BYTES, default 65536).")
    var maxBodyBytes: Int?
    @Flag(help: "Enable the operator fault-injection routes (env ECOWATT_FAULT_INJECTION=true). Never in production.")
    var faultInjection = false
    @Flag(help: "Print the effective configuration, each value with its source (default, file, environment, flag), and exit.")
    var printConfig = false
    @Flag(help: "Print the configuration reference (Markdown, as in the README) from the declared settings, and exit.")
    var printReference = false
    @Option(
        name: .customLong("limit"),
        help: "A limit as key=value, repeatable (env ECOWATT_LIMITS_<KEY>; the README lists them), e.g. --limit max_connections=2000."
    )
    var limits: [String] = []

    func run() async throws {
        if printReference {
            print(ServerConfiguration.referenceHead)
            print(ServerConfiguration.referenceRows.joined(separator: "\n"))
            return
        }
        // Flags by setting key (``ServerConfiguration/settings``); they override the file and the environment.
        var flags: [String: ConfigValue] = [:]
        let texts: [(String, String?)] = [
            ("host", host), ("operator_host", operatorHost), ("tls_cert_file", tlsCertFile), ("tls_key_file", tlsKeyFile),
            ("data_dir", dataDir), ("keys_dir", keysDir), ("firmware_dir", firmwareDir), ("diagnostics_dir", diagnosticsDir),
            ("log_level", logLevel), ("durability", durability),
        ]
        for case (let key, let value?) in texts { flags[key] = ConfigValue(.string(value), isSecret: false) }
        let numbers: [(String, Int?)] = [("port", port), ("operator_port", operatorPort), ("max_body_bytes", maxBodyBytes)]
        for case (let key, let value?) in numbers { flags[key] = ConfigValue(.int(value), isSecret: false) }
        if faultInjection { flags["fault_injection"] = ConfigValue(.bool(true), isSecret: false) }
        for text in limits {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let value = Int(parts[1]) else {
                throw ValidationError("--limit takes key=value with an integer value, not '\(text)'")
            }
            guard ServerLimits.setting(parts[0]) != nil else {
                throw ValidationError("--limit: unknown limit '\(parts[0])' (the README lists them)")
            }
            flags["limits." + parts[0]] = ConfigValue(.int(value), isSecret: false)
        }
        if printConfig {
            do {
                print(try await ServerConfiguration.describe(configFile: config, environment: ProcessInfo.processInfo.environment, flags: flags))
            } catch {
                throw ValidationError(error.message)
            }
            return
        }
        let configuration: ServerConfiguration
        do {
            configuration = try await ServerConfiguration.load(
                configFile: config,
                environment: ProcessInfo.processInfo.environment,
                flags: flags
            )
        } catch {
            throw ValidationError(error.message)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = DeferredMetadataLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "ecowatt")
        let descriptors = FileDescriptorLimit.raise()
        logger.info("open-file limit", metadata: ["soft": "\(descriptors.soft)", "hard": "\(descriptors.hard)"])
        let server: EcoWattApplication
        do {
            server = try await EcoWattApplication(configuration: configuration, logger: logger)
        } catch let error as DataDirectoryLock.Failure {
            throw Self.fail(logger, "\(error)")
        } catch let error as ConfigurationError {
            throw Self.fail(logger, error.message)
        }
        logger.notice(
            "EcoWatt Cloud starting",
            metadata: [
                "version": "\(BuildInfo.description)",
                "address": "\(configuration.http.host):\(configuration.http.port)",
                "operator_address": "\(configuration.http.operatorPort.map { "\(configuration.http.operatorHost):\($0)" } ?? "same as devices")",
                "database": "\(server.storage.location)",
                "fleet_key": "\(server.fleetKey.isPublic ? "public default" : "private \(server.fleetKey.fingerprint)")",
            ]
        )
        do {
            try await server.application.runService()
        } catch let error as ListenerError {
            throw Self.fail(logger, error.description)
        } catch let error as IOError {
            // The device listener's bind (the operator listener's failures arrive as ListenerError).
            throw Self.fail(
                logger,
                ListenerError(address: "\(configuration.http.host):\(configuration.http.port)", underlying: "\(error)").description
            )
        }
        try server.storage.close()
        server.lock.release()
        logger.notice("EcoWatt Cloud stopped; database closed")
    }

    /// Logs a fatal start-up error as one line and exits with status 1.
    static func fail(_ logger: Logger, _ message: String) -> ExitCode {
        logger.critical("\(message)")
        return ExitCode(1)
    }
}
