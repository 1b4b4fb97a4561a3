import AsyncHTTPClient
import EcoWattProtocol
import FirmwareImage
import Foundation
import NIOHTTP1

/// Commands, remote configuration and energy reports (spec §4–§6).
extension SimulatedDevice {
    // MARK: - Commands (spec §4)

    mutating func pollCommand() async {
        guard
            let reply = await connection.send(
                .GET,
                "/commands/\(id)/poll",
                route: "GET /commands/{id}/poll",
                timeoutSeconds: 6,
                accepted: [200],
                pool: ArduinoJSONPool.commandPoll
            ),
            reply.status == 200, let json = reply.json, json["commands"] != nil,
            let count = json["count"]?.intValue, count > 0,
            let first = json["commands"]?.arrayValue?.first
        else { return }
        let commandID = first["command_id"]?.stringValue ?? ""
        guard let command = first["command"], command.isObject else { return }
        let action = command["action"]?.stringValue ?? ""
        let status = execute(action: action, command: command) ? "success" : "failed"
        let result: JSONValue = .object([
            (
                "command_result",
                .object([
                    ("command_id", .string(commandID)), ("status", .string(status)),
                    ("executed_at", .string(EpochTime.iso8601(seconds: seconds))),
                ])
            )
        ])
        let answer = await connection.send(
            .POST,
            "/commands/\(id)/result",
            route: "POST /commands/{id}/result",
            body: result.serialized,
            timeoutSeconds: 5,
            accepted: [200]
        )
        let executed = ExecutedCommand(
            deviceID: id,
            commandID: commandID,
            action: action,
            status: status,
            reported: answer?.status == 200
        )
        statistics.update { $0.commands.append(executed) }
    }

    /// The firmware's `CommandExecutor` against the simulated inverter (only register 8, `Pow`, changes anything).
    mutating func execute(action: String, command: JSONValue) -> Bool {
        let value = command["value"]?.intValue ?? 0
        switch action {
        case "write_register":
            var address = command["register_address"]?.intValue ?? -1
            if address < 0 {
                // atoi(target_register): a leading number, "0" allowed; a name without an address fails.
                let digits = (command["target_register"]?.stringValue ?? "").prefix { $0.isNumber }
                guard let parsed = Int64(digits) else { return false }
                address = parsed
            }
            if UInt16(truncatingIfNeeded: address) == 8 { model.exportLimit = UInt16(truncatingIfNeeded: value) }
            return true
        case "set_power":
            model.exportLimit = UInt16(min(max(value * 100 / 10000, 0), 100))
            return true
        case "set_power_percentage":
            model.exportLimit = UInt16(min(max(value, 0), 100))
            return true
        case "get_power_stats", "get_peripheral_stats", "reset_power_stats", "reset_peripheral_stats":
            return true
        default:
            return false
        }
    }

    // MARK: - Remote configuration (spec §5)

    mutating func pollConfig() async {
        // The firmware parses the body whatever the status.
        guard
            let reply = await connection.send(
                .GET,
                "/config/\(id)",
                route: "GET /config/{id}",
                timeoutSeconds: 15,
                accepted: [200],
                pool: ArduinoJSONPool.config
            ),
            let json = reply.json, json["is_pending"] == .bool(true),
            let pending = json["pending_config"], pending.isObject
        else { return }
        let document = pending["config_update"].flatMap { $0.isObject ? $0 : nil } ?? pending
        var changes = 0
        func interval(_ key: String) -> Double? {
            guard let field = document[key] else { return nil }
            // as<uint32_t>(): floats truncate, numeric strings parse, anything else is 0.
            if let number = field.doubleValue { return number < 0 ? 0 : Double(UInt32(min(number, 4e9))) }
            if let text = field.stringValue { return Double(UInt32(text) ?? 0) }
            return 0
        }
        func apply(_ key: String, _ job: Job, _ path: WritableKeyPath<DeviceIntervals, Double>) {
            guard let seconds = interval(key), seconds != intervals[keyPath: path] else { return }
            if key == "energy_poll_interval", seconds < 5 { return }  // the firmware rejects it silently
            guard seconds > 0 else {
                // The firmware would write 0 to its timer (a busy loop); the simulator refuses it and reports it.
                statistics.update {
                    $0.errors["GET /config/{id}: \(key)=\(Int(seconds)) would stall the firmware; not applied", default: 0] += 1
                }
                return
            }
            intervals[keyPath: path] = seconds
            changes += 1
            schedule(job)
        }
        apply("sampling_interval", .sensor, \.poll)
        apply("upload_interval", .upload, \.upload)
        apply("config_poll_interval", .config, \.config)
        apply("command_poll_interval", .command, \.command)
        apply("firmware_check_interval", .ota, \.ota)
        apply("energy_poll_interval", .energy, \.energy)
        if let names = document["registers"]?.arrayValue {
            let matched = Set(names.compactMap { $0.stringValue.flatMap(Register.init(name:))?.rawValue })
            if !matched.isEmpty {
                pendingLayout = matched.sorted()
                changes += 1  // always counted as a change (spec §5.2)
            }
        }
        if let power = document["power_management"], power.isObject {
            if let enabled = power["enabled"]?.boolValue, enabled != powerManagementEnabled {
                powerManagementEnabled = enabled
                changes += 1
            }
            if let value = power["techniques"]?.intValue, Int(value) != techniques {
                techniques = Int(value)
                changes += 1
            }
        }
        guard changes > 0 else { return }
        configChangePending = true
        let acknowledgement: JSONValue = .object([
            ("status", "applied"), ("timestamp", .int(seconds)), ("error_msg", "Configuration updated successfully"),
            (
                "power_management",
                .object([
                    ("enabled", .bool(powerManagementEnabled)), ("techniques", .int(Int64(techniques))),
                    ("energy_poll_freq", .int(Int64(UInt32(truncatingIfNeeded: Int64(intervals.energy * 1_000_000))))),
                ])
            ),
        ])
        _ = await connection.send(
            .POST,
            "/config/\(id)/acknowledge",
            route: "POST /config/{id}/acknowledge",
            body: acknowledgement.serialized,
            timeoutSeconds: 15,
            accepted: [200]
        )
        statistics.update { $0.configsApplied += 1 }
    }

    // MARK: - Energy report (spec §6.1)

    mutating func reportEnergy() async {
        let uptime = UInt32(truncatingIfNeeded: clock.nowMs - bootMs)
        let current = 140 + Double(model.exportLimit) / 10
        let saved = powerManagementEnabled ? Double(uptime) / 3_600_000 * 12 : 0
        let body =
            #"{"device_id":"\#(id)","timestamp":\#(clock.nowMs),"power_management":{"enabled":\#(powerManagementEnabled),"#
            + #""techniques":"0x\#(String(format: "%02X", techniques))","avg_current_ma":\#(String(format: "%.2f", current)),"#
            + #""energy_saved_mah":\#(String(format: "%.2f", saved)),"peripheral_savings_mah":\#(String(format: "%.2f", saved / 2)),"#
            + #""uptime_ms":\#(uptime),"high_perf_ms":\#(uptime / 10),"normal_ms":\#(uptime - uptime / 10),"low_power_ms":0,"sleep_ms":0}}"#
        let reply = await connection.send(
            .POST,
            "/power/energy/\(id)",
            route: "POST /power/energy/{id}",
            body: body,
            timeoutSeconds: 10
        )
        if let reply, reply.status == 200 || reply.status == 201 { statistics.update { $0.energyReports += 1 } }
    }
}
