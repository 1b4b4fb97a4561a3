import Configuration
import EcoWattProtocol
import Foundation

extension ServerConfiguration {
    /// One setting, declared once: its key in the config file (`limits.x` for a limit, the `limits` object), its
    /// environment variable (derived), its help, the type swift-configuration reads it as, and how a value is checked
    /// and stored. ``ServerConfiguration/settings`` lists them all; loading, `--print-config` and the README reference
    /// (checked by a test) come from that list.
    public struct Setting: Sendable {
        public let key: String
        public let help: String
        /// What a valid value is (`1...65535`, `one of normal, full`), for errors and the README.
        public let rule: String
        let type: ConfigType
        let isSecret: Bool
        /// Checks a value and stores it; the message says what a valid value is.
        let assign: @Sendable (inout ServerConfiguration, ConfigContent) throws(ConfigurationError) -> Void
        /// The effective value as `--print-config` and the README show it (secrets masked).
        let show: @Sendable (ServerConfiguration) -> String

        /// `ECOWATT_` and the key in capitals, dots as underscores: what swift-configuration's environment provider
        /// looks up for the key under the `ecowatt` prefix.
        public var environmentName: String { "ECOWATT_" + key.replacingOccurrences(of: ".", with: "_").uppercased() }

        public func value(in configuration: ServerConfiguration) -> String { show(configuration) }

        static func integer(
            _ key: String,
            _ path: WritableKeyPath<ServerConfiguration, Int> & Sendable,
            _ range: ClosedRange<Int>,
            _ help: String
        ) -> Setting {
            Setting(key: key, help: help, rule: "\(range)", type: .int, isSecret: false) { (configuration, content) throws(ConfigurationError) in
                guard case .int(let value) = content, range.contains(value) else {
                    throw .invalid("\(key) must be an integer in \(range)")
                }
                configuration[keyPath: path] = value
            } show: {
                "\($0[keyPath: path])"
            }
        }

        static func port(_ key: String, _ path: WritableKeyPath<ServerConfiguration, Int?> & Sendable, _ help: String) -> Setting {
            Setting(key: key, help: help, rule: "1...65535", type: .int, isSecret: false) { (configuration, content) throws(ConfigurationError) in
                guard case .int(let value) = content, (1...65535).contains(value) else {
                    throw .invalid("\(key) must be an integer in 1...65535")
                }
                configuration[keyPath: path] = value
            } show: {
                $0[keyPath: path].map(String.init) ?? "none"
            }
        }

        static func flag(_ key: String, _ path: WritableKeyPath<ServerConfiguration, Bool> & Sendable, _ help: String) -> Setting {
            Setting(key: key, help: help, rule: "true or false", type: .bool, isSecret: false) {
                (configuration, content) throws(ConfigurationError) in
                guard case .bool(let value) = content else { throw .invalid("\(key) must be true or false") }
                configuration[keyPath: path] = value
            } show: {
                "\($0[keyPath: path])"
            }
        }

        /// A text setting; `normalise` returns the value to store, or `nil` when it is not valid (`rule` says why).
        static func text(
            _ key: String,
            _ path: WritableKeyPath<ServerConfiguration, String> & Sendable,
            _ help: String,
            rule: String = "not empty",
            normalise: @escaping @Sendable (String) -> String? = { $0.isEmpty ? nil : $0 }
        ) -> Setting {
            Setting(key: key, help: help, rule: rule, type: .string, isSecret: false) { (configuration, content) throws(ConfigurationError) in
                guard case .string(let text) = content, let value = normalise(text) else { throw .invalid("\(key) must be \(rule)") }
                configuration[keyPath: path] = value
            } show: {
                $0[keyPath: path]
            }
        }

        /// An optional text setting (a file or a name), shown as `none` when unset, or as `***` when secret.
        static func optionalText(
            _ key: String,
            _ path: WritableKeyPath<ServerConfiguration, String?> & Sendable,
            _ help: String,
            isSecret: Bool = false
        ) -> Setting {
            Setting(key: key, help: help, rule: "a path or name", type: .string, isSecret: isSecret) {
                (configuration, content) throws(ConfigurationError) in
                guard case .string(let value) = content else { throw .invalid("\(key) must be text") }
                configuration[keyPath: path] = value
            } show: { configuration in
                configuration[keyPath: path].map { isSecret ? "***" : $0 } ?? "none"
            }
        }

        /// One of an enumeration's raw values, in any case.
        static func choice<Value: RawRepresentable & CaseIterable & Sendable>(
            _ key: String,
            _ path: WritableKeyPath<ServerConfiguration, Value> & Sendable,
            _ help: String
        ) -> Setting where Value.RawValue == String {
            let names = Value.allCases.map(\.rawValue).joined(separator: ", ")
            return Setting(key: key, help: help, rule: "one of \(names)", type: .string, isSecret: false) {
                (configuration, content) throws(ConfigurationError) in
                guard case .string(let text) = content, let value = Value(rawValue: text.lowercased()) else {
                    throw .invalid("\(key) must be one of \(names)")
                }
                configuration[keyPath: path] = value
            } show: {
                $0[keyPath: path].rawValue
            }
        }

        /// A list of text values: an array in the file, comma-separated in the environment.
        static func list(
            _ key: String,
            _ path: WritableKeyPath<ServerConfiguration, [String]> & Sendable,
            _ help: String,
            rule: String,
            valid: @escaping @Sendable (String) -> Bool
        ) -> Setting {
            Setting(key: key, help: help, rule: rule, type: .stringArray, isSecret: false) { (configuration, content) throws(ConfigurationError) in
                guard case .stringArray(let items) = content else { throw .invalid("\(key) must be a list") }
                let values = items.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                guard values.allSatisfy(valid) else { throw .invalid("\(key) must be \(rule)") }
                configuration[keyPath: path] = values
            } show: {
                $0[keyPath: path].isEmpty ? "none" : $0[keyPath: path].joined(separator: ",")
            }
        }
    }
}
