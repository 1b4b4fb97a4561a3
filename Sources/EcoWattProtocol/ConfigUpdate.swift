/// Validation of an operator's `{"config_update":{…}}` against what the firmware survives (spec §5.2).
///
/// Intervals outside these ranges put devices into watchdog reboot loops or busy loops; values must be JSON integers
/// and booleans (the device reads `"50"` and `50.0` differently from `50`), and `registers` must be 1–10 distinct
/// known names (a duplicate makes the device index out of bounds).
public struct ConfigUpdate: Sendable, Equatable {
    /// Accepted fields that change the device, in a stable order, ready to deliver.
    public var accepted: [(String, JSONValue)]
    /// Refused fields with the reason.
    public var rejected: [(String, String)]
    /// Valid fields equal to what the device already runs (not delivered).
    public var unchanged: [String]

    public static func == (lhs: ConfigUpdate, rhs: ConfigUpdate) -> Bool {
        JSONValue.object(lhs.accepted) == JSONValue.object(rhs.accepted) && lhs.unchanged == rhs.unchanged
            && lhs.rejected.map(\.0) == rhs.rejected.map(\.0) && lhs.rejected.map(\.1) == rhs.rejected.map(\.1)
    }

    /// Interval fields and their firmware-safe ranges in seconds.
    public static let intervalRanges: [(String, ClosedRange<Int64>)] = [
        ("sampling_interval", 1...110), ("upload_interval", 10...590), ("config_poll_interval", 1...300),
        ("command_poll_interval", 5...300), ("firmware_check_interval", 30...86_400), ("energy_poll_interval", 5...590),
    ]

    /// The firmware-safe range of an interval field (seconds).
    public static func range(of key: String) -> ClosedRange<Int> {
        intervalRanges.first { $0.0 == key }.map { Int($0.1.lowerBound)...Int($0.1.upperBound) } ?? 1...1
    }

    /// The firmware's defaults (spec §0.7), for a device whose boot report is not known.
    public static let firmwareDefaults: JSONValue = .object([
        ("sampling_interval", .int(5)), ("upload_interval", .int(15)),
        ("registers", .array(["Vac1", "Iac1", "Ipv1", "Pac", "Ipv2", "Temp"].map(JSONValue.string))),
    ])

    /// Validates `update` (the object inside `config_update`) against the device's `running` configuration (the
    /// boot report plus applied updates; empty when unknown) of device `deviceID` (its id is in every upload).
    public init(update: JSONValue, running: JSONValue, deviceID: String? = nil) throws(ConfigValidationError) {
        guard case .object(let members) = update else { throw .init("config_update must be a JSON object") }
        guard !members.isEmpty else { throw .init("config_update is empty") }
        accepted = []
        rejected = []
        unchanged = []
        var seen = Set<String>()
        for (key, value) in members {
            guard seen.insert(key).inserted else {
                rejected.append((key, "given more than once"))
                continue
            }
            let normalised: JSONValue
            switch Self.validate(key: key, value: value) {
            case .failure(let error):
                rejected.append((key, error.reason))
                continue
            case .success(let value): normalised = value
            }
            if Self.matches(normalised, running[key], key: key) {
                unchanged.append(key)
            } else {
                accepted.append((key, normalised))
            }
        }
        // Upload faster than sampling sends empty periods; check against the effective sampling interval.
        if let upload = accepted.first(where: { $0.0 == "upload_interval" })?.1.intValue {
            let sampling =
                accepted.first(where: { $0.0 == "sampling_interval" })?.1.intValue ?? running["sampling_interval"]?.intValue
            if let sampling, upload < sampling {
                accepted.removeAll { $0.0 == "upload_interval" }
                rejected.append(("upload_interval", "upload_interval \(upload) s is shorter than sampling_interval \(sampling) s"))
            }
        }
        try checkCapacity(running: running, deviceID: deviceID)
    }

    /// The device's whole configuration after this update (or the firmware defaults where it is not known) must not
    /// lose data (``DeviceCapacity``); otherwise the update is refused as a whole, with the safe values.
    private func checkCapacity(running: JSONValue, deviceID: String?) throws(ConfigValidationError) {
        let fields = ["sampling_interval", "upload_interval", "registers"]
        guard accepted.contains(where: { fields.contains($0.0) }) else { return }
        let result = JSONValue.merge(JSONValue.merge(Self.firmwareDefaults, running), .object(accepted))
        let sampling = result["sampling_interval"]?.intValue.flatMap { Int(exactly: $0) } ?? 5
        let upload = result["upload_interval"]?.intValue.flatMap { Int(exactly: $0) } ?? 15
        let registers = (result["registers"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Register.init(name:)) }
        let problems = DeviceCapacity.problems(samplingSeconds: sampling, uploadSeconds: upload, registers: registers, deviceID: deviceID)
        guard !problems.isEmpty else { return }
        let limits = DeviceCapacity.safeLimits(samplingSeconds: sampling, uploadSeconds: upload, registers: registers, deviceID: deviceID)
        throw ConfigValidationError(
            "The device would lose data with sampling_interval \(sampling) s, upload_interval \(upload) s and \(registers.count) registers: "
                + problems.joined(separator: "; "),
            limits: [
                ("upload_interval", limits.maxUploadSeconds.map { .object([("max", .int(Int64($0)))]) } ?? .null),
                ("sampling_interval", limits.minSamplingSeconds.map { .object([("min", .int(Int64($0)))]) } ?? .null),
                ("registers", limits.maxRegisters.map { .object([("max_count", .int(Int64($0)))]) } ?? .null),
            ]
        )
    }

    /// The delivered document: `{"config_update":{…accepted…}}`.
    public var document: JSONValue { .object([("config_update", .object(accepted))]) }

    static func validate(key: String, value: JSONValue) -> Result<JSONValue, ConfigValidationError> {
        if let range = intervalRanges.first(where: { $0.0 == key })?.1 {
            guard let seconds = value.intValue else { return .failure(.init("must be a JSON integer (seconds)")) }
            guard range.contains(seconds) else {
                return .failure(.init("\(seconds) outside the firmware-safe range \(range.lowerBound)...\(range.upperBound) s"))
            }
            return .success(.int(seconds))
        }
        switch key {
        case "registers":
            guard let names = value.arrayValue, (1...10).contains(names.count) else {
                return .failure(.init("must be an array of 1 to 10 register names"))
            }
            var distinct = [String]()
            for name in names {
                guard let text = name.stringValue, Register(name: text) != nil else {
                    return .failure(.init("unknown register \(name.serialized); known: \(Register.allCases.map(\.name).joined(separator: ", "))"))
                }
                guard !distinct.contains(text) else { return .failure(.init("register \(text) listed twice")) }
                distinct.append(text)
            }
            return .success(.array(distinct.map(JSONValue.string)))
        case "power_management":
            guard case .object(let fields) = value, !fields.isEmpty else {
                return .failure(.init("must be an object with enabled (bool) and/or techniques (integer 0-15)"))
            }
            var out = [(String, JSONValue)]()
            for (field, fieldValue) in fields {
                switch field {
                case "enabled":
                    guard let flag = fieldValue.boolValue else { return .failure(.init("enabled must be a JSON boolean")) }
                    out.append((field, .bool(flag)))
                case "techniques":
                    guard let bits = fieldValue.intValue, (0...15).contains(bits) else {
                        return .failure(.init("techniques must be a JSON integer 0-15 (not a \"0x..\" string)"))
                    }
                    out.append((field, .int(bits)))
                default: return .failure(.init("unknown power_management field '\(field)'"))
                }
            }
            return .success(.object(out))
        default:
            return .failure(.init("unknown field (the firmware ignores it)"))
        }
    }

    /// Whether `value` equals what the device runs. Registers compare as sets (order is irrelevant on the device).
    public static func matches(_ value: JSONValue, _ current: JSONValue?, key: String) -> Bool {
        guard let current else { return false }
        switch (key, value, current) {
        case ("registers", .array(let new), .array(let old)):
            return Set(new.compactMap(\.stringValue)) == Set(old.compactMap(\.stringValue))
        case ("power_management", .object(let new), _):
            return new.allSatisfy { field, fieldValue in current[field] == fieldValue }
        default: return value == current
        }
    }
}

/// A configuration request the server refuses as a whole.
public struct ConfigValidationError: Error, Sendable, Equatable {
    public var reason: String
    /// For a configuration that would lose data: the safe value of each setting with the others as requested.
    public var limits: [(String, JSONValue)]

    public init(_ reason: String, limits: [(String, JSONValue)] = []) {
        self.reason = reason
        self.limits = limits
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.reason == rhs.reason && JSONValue.object(lhs.limits) == JSONValue.object(rhs.limits)
    }
}

extension JSONValue {
    /// `base` with `overlay`'s members replacing or adding (one level; `power_management` merged field by field).
    public static func merge(_ base: JSONValue, _ overlay: JSONValue) -> JSONValue {
        guard case .object(var members) = base else { return overlay }
        guard case .object(let additions) = overlay else { return base }
        for (key, value) in additions {
            if let index = members.firstIndex(where: { $0.0 == key }) {
                members[index].1 = key == "power_management" ? merge(members[index].1, value) : value
            } else {
                members.append((key, value))
            }
        }
        return .object(members)
    }
}
