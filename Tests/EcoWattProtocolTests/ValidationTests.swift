import EcoWattProtocol
import Testing

@Suite struct CommandRequestTests {
    func parse(_ text: String, now: Int64 = 1_000_000) throws(CommandValidationError) -> CommandRequest {
        try CommandRequest(json: try! JSONParser.parse(Array(text.utf8)), nowMs: now)
    }

    @Test func bothShapesNormaliseTheRegister() throws {
        let firmware = try parse(#"{"command":{"action":"write_register","target_register":"export_power","value":50}}"#)
        #expect(firmware.registerAddress == 8)
        #expect(firmware.value == 50)
        let byAddress = try parse(#"{"command":{"action":"write_register","target_register":8,"value":1}}"#)
        #expect(byAddress.targetRegister == "8")
        #expect(byAddress.registerAddress == 8)
        let byName = try parse(#"{"command":{"action":"write_register","target_register":"Pac","value":1}}"#)
        #expect(byName.registerAddress == 9)
        #expect(try parse(#"{"command":{"action":"write_register","target_register":"status_flag","value":1}}"#).registerAddress == 0)
        let original = try parse(#"{"command_type":"set_power","parameters":{"value":5000},"ttl_seconds":60}"#)
        #expect(original.action == "set_power")
        #expect(original.registerAddress == 8)
        #expect(original.expiresAtMs == Int64(1_060_000))
        let stats = try parse(#"{"command":{"action":"get_power_stats"},"idempotency_key":"k1"}"#)
        #expect(stats.value == nil)
        #expect(stats.idempotencyKey == "k1")
    }

    @Test func rangesAndTypesAreEnforced() {
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"set_power","value":10001}}"#) }
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"set_power_percentage","value":-1}}"#) }
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"write_register","target_register":"70000","value":1}}"#) }
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"set_power","value":true}}"#) }
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"get_power_stats"},"expires_at":1}"#) }
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"get_power_stats"},"expires_at":1e300}"#) }
        #expect(throws: CommandValidationError.self) { try parse(#"{"command":{"action":"get_power_stats"},"idempotency_key":""}"#) }
    }

    @Test func resultShapes() throws {
        let firmware = try CommandResultReport(
            json: try JSONParser.parse(Array(#"{"command_result":{"command_id":"a","status":"failed","executed_at":"1970-01-01T00:00:05Z"}}"#.utf8))
        )
        #expect(firmware.commandID == "a")
        #expect(!firmware.succeeded)
        #expect(firmware.executedAt == "1970-01-01T00:00:05Z")
        let original = try CommandResultReport(
            json: try JSONParser.parse(Array(#"{"command_id":"b","success":true,"result_data":{"echo":"110600080032"}}"#.utf8))
        )
        #expect(original.succeeded)
        #expect(original.resultJSON == #"{"echo":"110600080032"}"#)
        #expect(throws: CommandValidationError.self) {
            try CommandResultReport(json: try JSONParser.parse(Array(#"{"command_result":{"command_id":"c","status":"maybe"}}"#.utf8)))
        }
    }
}

@Suite struct ConfigUpdateTests {
    let running = try! JSONParser.parse(
        Array(#"{"sampling_interval":5,"upload_interval":15,"registers":["Vac1","Iac1"],"power_management":{"enabled":false,"techniques":8}}"#.utf8)
    )

    func update(_ text: String) throws(ConfigValidationError) -> ConfigUpdate {
        try ConfigUpdate(update: try! JSONParser.parse(Array(text.utf8)), running: running)
    }

    @Test(arguments: [
        ("sampling_interval", "0", false), ("sampling_interval", "110", true), ("sampling_interval", "111", false),
        ("upload_interval", "590", true), ("upload_interval", "591", false), ("config_poll_interval", "300", true),
        ("command_poll_interval", "4", false), ("firmware_check_interval", "29", false),
        ("firmware_check_interval", "86400", true), ("energy_poll_interval", "5", true), ("energy_poll_interval", "600", false),
        ("sampling_interval", "\"10\"", false), ("sampling_interval", "10.0", false),
    ])
    func intervalRanges(_ key: String, _ value: String, _ accepted: Bool) throws {
        let result = try update("{\"\(key)\":\(value)}")
        #expect(result.accepted.map(\.0) == (accepted ? [key] : []))
        #expect(result.rejected.map(\.0) == (accepted ? [] : [key]))
    }

    @Test func registersAndPowerManagement() throws {
        #expect(try update(#"{"registers":["Iac1","Vac1"]}"#).unchanged == ["registers"])  // same set, other order
        #expect(try update(#"{"registers":["Vac1","Pac"]}"#).accepted.map(\.0) == ["registers"])
        #expect(try update(#"{"registers":["Vac1","vac1"]}"#).rejected.map(\.0) == ["registers"])
        #expect(try update(#"{"registers":["Vac1","Vac1"]}"#).rejected.map(\.0) == ["registers"])
        let eleven = (0..<11).map { _ in "\"Vac1\"" }.joined(separator: ",")
        #expect(try update("{\"registers\":[\(eleven)]}").rejected.map(\.0) == ["registers"])
        #expect(try update(#"{"power_management":{"techniques":8}}"#).unchanged == ["power_management"])
        #expect(try update(#"{"power_management":{"enabled":true}}"#).accepted.map(\.0) == ["power_management"])
        #expect(try update(#"{"power_management":{"techniques":"0x08"}}"#).rejected.map(\.0) == ["power_management"])
        #expect(try update(#"{"power_management":{"techniques":16}}"#).rejected.map(\.0) == ["power_management"])
    }

    @Test func uploadMustNotBeFasterThanSampling() throws {
        let slow = try update(#"{"sampling_interval":60,"upload_interval":30}"#)
        #expect(slow.accepted.map(\.0) == ["sampling_interval"])
        #expect(slow.rejected.map(\.0) == ["upload_interval"])
        #expect(try update(#"{"upload_interval":10}"#).accepted.map(\.0) == ["upload_interval"])  // running sampling 5
        #expect(throws: ConfigValidationError.self) { try update("{}") }
        #expect(throws: ConfigValidationError.self) { try update("[1]") }
        #expect(try update(#"{"compression_enabled":false}"#).rejected.first?.1.contains("unknown") == true)
    }

    @Test func mergeKeepsPowerManagementFields() {
        let merged = JSONValue.merge(running, try! JSONParser.parse(Array(#"{"sampling_interval":10,"power_management":{"enabled":true}}"#.utf8)))
        #expect(merged["sampling_interval"]?.intValue == 10)
        #expect(merged["power_management"]?["enabled"]?.boolValue == true)
        #expect(merged["power_management"]?["techniques"]?.intValue == 8)
    }
}
