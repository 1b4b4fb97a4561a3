import Configuration
import EcoWattProtocol
import Foundation
import Synchronization
import SystemPackage

extension ServerConfiguration {
    /// Where an effective value came from.
    public enum Source: String, Sendable {
        case defaults = "default"
        case file
        case environment
        case flag
    }

    /// The effective configuration and the source of every value that is not a default.
    public struct Resolved: Sendable {
        public var configuration: ServerConfiguration
        public var sources: [String: Source]
    }

    /// Builds the effective configuration through swift-configuration: the JSON config file (`configFile` or
    /// `ECOWATT_CONFIG`) over the defaults, the `ECOWATT_*` environment over the file, `flags` (keys of ``settings``)
    /// over everything. Every value is checked; a bad one is refused with where it came from.
    public static func load(
        configFile: String?,
        environment: [String: String],
        flags: [String: ConfigValue] = [:]
    ) async throws(ConfigurationError) -> ServerConfiguration {
        try await resolve(configFile: configFile, environment: environment, flags: flags).configuration
    }

    public static func resolve(
        configFile: String?,
        environment: [String: String],
        flags: [String: ConfigValue] = [:]
    ) async throws(ConfigurationError) -> Resolved {
        // An empty variable counts as unset (`ECOWATT_PORT= ecowatt serve`).
        let environment = environment.filter { !$0.value.isEmpty }
        let path = configFile ?? environment["ECOWATT_CONFIG"]
        let secrets = Set(settings.filter(\.isSecret).map(\.environmentName))
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: Dictionary(uniqueKeysWithValues: flags.map { (AbsoluteConfigKey(ConfigKey($0.key)), $0.value) })),
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(secrets)).prefixKeys(with: "ecowatt"),
        ]
        if let path {
            try checkKeys(ofFile: path)
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(path)))
            } catch {
                throw .invalid("\(path): not a valid JSON configuration (\(error))")
            }
        }
        let recorder = LookupRecorder()
        let reader = ConfigReader(providers: providers, accessReporter: recorder)
        var resolved = Resolved(configuration: ServerConfiguration(), sources: [:])
        for setting in settings {
            let key = ConfigKey(setting.key)
            let content: ConfigContent? =
                switch setting.type {
                case .int: reader.int(forKey: key).map(ConfigContent.int)
                case .bool: reader.bool(forKey: key).map(ConfigContent.bool)
                case .stringArray: reader.stringArray(forKey: key).map(ConfigContent.stringArray)
                default: reader.string(forKey: key, isSecret: setting.isSecret).map(ConfigContent.string)
                }
            let lookup = recorder.take(setting.key)
            guard let source = lookup.source else { continue }
            let origin =
                switch source {
                case .environment:
                    setting.isSecret ? setting.environmentName : "\(setting.environmentName)=\(environment[setting.environmentName] ?? "")"
                case .file: path ?? "config file"
                case .flag, .defaults: "flag"
                }
            guard let content, !lookup.failed else {
                throw .invalid("\(origin): \(setting.key) must be \(setting.type.expectation)")
            }
            do {
                try setting.assign(&resolved.configuration, content)
            } catch {
                throw .invalid("\(origin): \(error.message)")
            }
            resolved.sources[setting.key] = source
        }
        return resolved
    }

    /// Refuses keys of the config file that are no setting (a misspelt key would otherwise be ignored silently).
    static func checkKeys(ofFile path: String) throws(ConfigurationError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw .invalid("cannot read config file \(path)") }
        guard case .object(let members) = try? JSONParser.parse([UInt8](data)) else {
            throw .invalid("\(path): not a valid JSON configuration (not a JSON object)")
        }
        let keys = Set(settings.map(\.key))
        for (key, value) in members {
            if key == "limits", case .object(let limits) = value {
                if let unknown = limits.first(where: { !keys.contains("limits." + $0.0) }) {
                    throw .invalid(
                        "\(path): unknown limit '\(unknown.0)' (one of \(ServerLimits.settings.map(\.key).joined(separator: ", ")))"
                    )
                }
            } else if !keys.contains(key) {
                throw .invalid("\(path): unknown configuration key '\(key)'")
            }
        }
    }
}

extension ConfigType {
    /// What a value of this type must be, for error messages.
    var expectation: String {
        switch self {
        case .int: "an integer"
        case .bool: "true or false"
        case .stringArray: "a list of text values"
        default: "text"
        }
    }
}

/// Records, for each key read, which provider answered (or failed): swift-configuration's access reporting, used to
/// name each value's source in `--print-config` and in errors.
final class LookupRecorder: AccessReporter {
    struct Lookup {
        var source: ServerConfiguration.Source?
        var failed = false
    }

    private let lookups = Mutex<[String: Lookup]>([:])

    func report(_ event: AccessEvent) {
        var lookup = Lookup()
        for result in event.providerResults {
            let source: ServerConfiguration.Source =
                if result.providerName.contains("EnvironmentVariablesProvider") {
                    .environment
                } else if result.providerName.contains("FileProvider") {
                    .file
                } else {
                    .flag
                }
            switch result.result {
            case .success(let found) where found.value != nil:
                lookup.source = source
            case .failure:
                lookup = Lookup(source: source, failed: true)
            default:
                continue
            }
            break
        }
        if event.conversionError != nil { lookup.failed = true }
        let key = event.metadata.key.components.joined(separator: ".")
        lookups.withLock { $0[key] = lookup }
    }

    /// The lookup of `key`, forgotten once taken.
    func take(_ key: String) -> Lookup {
        lookups.withLock { $0.removeValue(forKey: key) } ?? Lookup()
    }
}
