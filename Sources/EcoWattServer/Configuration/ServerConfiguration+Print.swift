import Configuration
import Foundation

extension ServerConfiguration {
    /// `ecowatt serve --print-config`: every setting's effective value and the layer it came from, one per line in the
    /// order of ``settings``, secrets masked (the fleet key by its fingerprint, passwords as `***`).
    public static func describe(
        configFile: String?,
        environment: [String: String],
        flags: [String: ConfigValue] = [:]
    ) async throws(ConfigurationError) -> String {
        let resolved = try await resolve(configFile: configFile, environment: environment, flags: flags)
        return settings.map { setting in
            "\(setting.key) = \(setting.show(resolved.configuration))  (\((resolved.sources[setting.key] ?? .defaults).rawValue))"
        }
        .joined(separator: "\n")
    }

    /// The head of ``referenceRows``' table.
    public static let referenceHead = "| Config file key | Environment | Default | Valid | Meaning |\n|---|---|---|---|---|"

    /// The README's configuration reference: one Markdown table row per setting that is not a limit (the limits have
    /// their own table), with its environment variable, default and help.
    public static var referenceRows: [String] {
        let defaults = ServerConfiguration()
        return settings.filter { !$0.key.hasPrefix("limits.") }.map { setting in
            "| `\(setting.key)` | `\(setting.environmentName)` | `\(setting.show(defaults))` | \(setting.rule) | \(setting.help) |"
        }
    }
}
