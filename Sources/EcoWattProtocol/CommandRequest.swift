/// An operator's command request, validated against what the firmware executes (spec §4.2, §4.5).
///
/// Accepts the firmware-era shape `{"command":{"action","target_register","value"}}` and the original documented
/// shape `{"command_type","parameters":{…}}`, plus optional `expires_at` (epoch seconds), `ttl_seconds` and
/// `idempotency_key`.
public struct CommandRequest: Sendable, Equatable {
    public var action: String
    /// The register as the operator named it (normalised to text).
    public var targetRegister: String?
    /// Modbus address the device writes (`write_register`; 8 for the power actions).
    public var registerAddress: Int?
    /// Integer value sent to the device.
    public var value: Int?
    /// Absolute expiry, epoch milliseconds.
    public var expiresAtMs: Int64?
    public var idempotencyKey: String?

    /// Actions the firmware executes.
    public static let actions = [
        "write_register", "set_power", "set_power_percentage", "get_power_stats", "get_peripheral_stats",
        "reset_power_stats", "reset_peripheral_stats",
    ]

    /// Register names the original server normalised, plus the firmware's register names.
    public static func registerAddress(named name: String) -> Int? {
        switch name {
        case "export_power", "export_power_percent": return 8
        case "status_flag": return 0
        default:
            if let register = Register(name: name) { return register.rawValue }
            if let number = Int(name), (0...65535).contains(number) { return number }
            return nil
        }
    }

    /// Longest accepted idempotency key.
    public static let maxIdempotencyKeyLength = 128

    /// Validates a request body. `nowMs` anchors `ttl_seconds`.
    public init(json: JSONValue, nowMs: Int64) throws(CommandValidationError) {
        guard json.isObject else { throw .init("body must be a JSON object") }
        let command: JSONValue
        if let nested = json["command"], nested.isObject {
            command = nested
            guard let action = nested["action"]?.stringValue else { throw .init("command.action must be a string") }
            self.action = action
        } else if let type = json["command_type"]?.stringValue {
            command = json["parameters"] ?? .object([])
            guard command.isObject else { throw .init("parameters must be an object") }
            action = type
        } else {
            throw .init("expected {\"command\":{\"action\":…}} or {\"command_type\":…,\"parameters\":{…}}")
        }
        guard Self.actions.contains(action) else {
            throw .init("unknown action '\(action)'; one of \(Self.actions.joined(separator: ", "))")
        }

        let rawValue = command["value"]
        func integerValue(_ range: ClosedRange<Int>) throws(CommandValidationError) -> Int {
            guard let raw = rawValue else { throw .init("\(action) needs an integer value") }
            guard let number = raw.intValue.flatMap({ Int(exactly: $0) }) else {
                throw .init("value must be a JSON integer (the device reads floats and strings as 0)")
            }
            guard range.contains(number) else { throw .init("value \(number) outside \(range.lowerBound)...\(range.upperBound) for \(action)") }
            return number
        }

        switch action {
        case "write_register":
            let target: String
            switch command["target_register"] {
            case .string(let name): target = name
            case .int(let number): target = String(number)
            default: throw .init("write_register needs target_register (a register name or address)")
            }
            guard let address = Self.registerAddress(named: target) else {
                throw .init("unknown target_register '\(target)'")
            }
            targetRegister = target
            registerAddress = address
            value = try integerValue(0...65535)
        case "set_power":
            targetRegister = "8"
            registerAddress = 8
            value = try integerValue(0...10_000)
        case "set_power_percentage":
            targetRegister = "8"
            registerAddress = 8
            value = try integerValue(0...100)
        default:
            targetRegister = nil
            registerAddress = nil
            value = nil
        }

        if let expires = json["expires_at"] {
            guard let seconds = expires.doubleValue, seconds > 0, seconds < 1e11 else {
                throw .init("expires_at must be epoch seconds (before the year 5138)")
            }
            let expires = Int64(seconds * 1000)
            guard expires > nowMs else { throw .init("expires_at is in the past") }
            expiresAtMs = expires
        } else if let ttl = json["ttl_seconds"] {
            guard let seconds = ttl.intValue, seconds > 0, seconds <= 30 * 86_400 else {
                throw .init("ttl_seconds must be an integer in 1...2592000")
            }
            expiresAtMs = nowMs + seconds * 1000
        }
        if let key = json["idempotency_key"] {
            guard let text = key.stringValue, !text.isEmpty, text.count <= Self.maxIdempotencyKeyLength else {
                throw .init("idempotency_key must be a string of 1...\(Self.maxIdempotencyKeyLength) characters")
            }
            idempotencyKey = text
        }
    }
}

/// A command request the server refuses, with the reason.
public struct CommandValidationError: Error, Sendable, Equatable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
}

/// A device's command result in the firmware shape `{"command_result":{"command_id","status","executed_at"}}` or the
/// original shape `{"command_id","status"|"success",…}` (spec §4.3, §10).
public struct CommandResultReport: Sendable, Equatable {
    public var commandID: String
    public var succeeded: Bool
    public var executedAt: String?
    public var errorMessage: String?
    /// `result`/`result_data` as compact JSON, if sent.
    public var resultJSON: String?

    public init(json: JSONValue) throws(CommandValidationError) {
        let body = json["command_result"].flatMap { $0.isObject ? $0 : nil } ?? json
        guard body.isObject else { throw .init("body must be a JSON object") }
        guard let id = body["command_id"]?.stringValue, !id.isEmpty else { throw .init("command_id must be a string") }
        commandID = id
        if let status = body["status"]?.stringValue {
            switch status {
            case "success", "completed": succeeded = true
            case "failed", "failure", "error": succeeded = false
            default: throw .init("status must be 'success' or 'failed'")
            }
        } else if let success = body["success"]?.boolValue {
            succeeded = success
        } else {
            throw .init("status ('success'|'failed') or success (bool) is required")
        }
        executedAt = body["executed_at"]?.stringValue
        errorMessage = (body["error_message"] ?? body["error"])?.stringValue
        resultJSON = (body["result_data"] ?? body["result"]).map(\.serialized)
    }
}
