import EcoWattProtocol
import Foundation

extension ServerConfiguration {
    /// Where an effective value came from.
    public enum Source: String, Sendable {
        case defaults = "default"
        case file
        case environment
        case flag
    }

    /// `ecowatt serve --print-config`: every setting's effective value and the layer it came from, one per line, secrets
    /// masked (the fleet key by its fingerprint, passwords as `***`).
    public static func describe(
        configFile: String?,
        environment: [String: String],
        flags: Layer
    ) throws(ConfigurationError) -> String {
        let configuration = try load(configFile: configFile, environment: environment, flags: flags)
        var layers: [(Source, Layer)] = [(.environment, try Layer(environment: environment)), (.flag, flags)]
        if let path = configFile ?? environment["ECOWATT_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }),
            let data = FileManager.default.contents(atPath: path),
            let layer = try? JSONDecoder().decode(Layer.self, from: data)
        {
            layers.insert((.file, layer), at: 0)
        }
        // The keys each layer sets: its JSON form (the synthesized encoding leaves out what it does not set).
        var sources: [String: Source] = [:]
        for (source, layer) in layers {
            guard let data = try? JSONEncoder().encode(layer),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { continue }
            for (key, value) in object {
                if key == "limits", let limits = value as? [String: Any] {
                    for limit in limits.keys { sources["limits.\(limit)"] = source }
                } else {
                    sources[key] = source
                }
            }
        }
        var lines: [String] = []
        for child in Mirror(reflecting: configuration).children {
            guard let label = child.label, label != "limits" else { continue }
            let key = Self.key(ofProperty: label)
            lines.append(
                "\(key) = \(Self.render(key: key, value: child.value, configuration: configuration))  (\((sources[key] ?? .defaults).rawValue))"
            )
        }
        lines.sort()
        for setting in ServerLimits.settings.sorted(by: { $0.key < $1.key }) {
            let value = configuration.limits.value(setting.key).map(String.init) ?? "?"
            lines.append("limits.\(setting.key) = \(value)  (\((sources["limits.\(setting.key)"] ?? .defaults).rawValue))")
        }
        return lines.joined(separator: "\n")
    }

    /// The configuration key of a ``ServerConfiguration`` property: snake case, with the names that differ listed
    /// (a test checks that every key of ``Layer`` is printed).
    static func key(ofProperty name: String) -> String {
        let irregular = [
            "dataDirectory": "data_dir", "keysDirectory": "keys_dir", "firmwareDirectory": "firmware_dir",
            "diagnosticsDirectory": "diagnostics_dir", "fleetKeyHex": "fleet_key", "mqttClientID": "mqtt_client_id",
            "mqttTLSCAFile": "mqtt_tls_ca_file", "mqttTLSCertFile": "mqtt_tls_cert_file", "mqttTLSKeyFile": "mqtt_tls_key_file",
            "mqttQoS": "mqtt_qos",
        ]
        if let key = irregular[name] { return key }
        var key = ""
        for character in name {
            if character.isUppercase {
                key += "_" + character.lowercased()
            } else {
                key.append(character)
            }
        }
        return key
    }

    static func isNil(_ value: Any) -> Bool {
        let mirror = Mirror(reflecting: value)
        return mirror.displayStyle == .optional && mirror.children.isEmpty
    }

    static func render(key: String, value: Any, configuration: ServerConfiguration) -> String {
        switch key {
        case "fleet_key":
            let notice = FleetKeyNotice(keyHex: configuration.fleetKeyHex)
            return notice.isPublic ? "firmware default (public)" : "*** (fingerprint \(notice.fingerprint))"
        case "mqtt_password":
            return configuration.mqttPassword == nil ? "none" : "***"
        default:
            if isNil(value) { return "none" }
            let mirror = Mirror(reflecting: value)
            let unwrapped = mirror.displayStyle == .optional ? mirror.children.first!.value : value
            if let policy = unwrapped as? any RawRepresentable { return "\(policy.rawValue)" }
            if let list = unwrapped as? [String] { return list.isEmpty ? "none" : list.joined(separator: ",") }
            return "\(unwrapped)"
        }
    }
}
