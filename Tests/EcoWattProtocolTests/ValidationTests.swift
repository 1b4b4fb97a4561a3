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
        // Long upload periods are checked at a sampling interval that keeps their batches within what a device holds.
        let slow = JSONValue.merge(running, .object([("sampling_interval", .int(60))]))
        let result = try ConfigUpdate(
            update: try! JSONParser.parse(Array("{\"\(key)\":\(value)}".utf8)),
            running: key == "upload_interval" ? slow : running
        )
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

    /// Issue 15: configurations that make the device lose data are refused as a whole, with the safe values.
    @Test func configurationsThatLoseDataAreRefusedWithTheSafeValues() throws {
        let defaults = JSONValue.object([])  // no boot report: the firmware's defaults (5 s, 15 s, 6 registers)
        func refusal(_ text: String, running: JSONValue) -> ConfigValidationError? {
            do {
                _ = try ConfigUpdate(update: try! JSONParser.parse(Array(text.utf8)), running: running)
                return nil
            } catch { return error }
        }
        // 300 s at 5 s: 61 samples in a period, the device keeps 50 (the corpus lost 11 to this).
        let overwrite = try #require(refusal(#"{"upload_interval":300}"#, running: defaults))
        #expect(overwrite.reason.contains("keeps 50"))
        // 120 s at 5 s: 25 samples × 6 registers compress to more than 189 bytes (the corpus's cut packets).
        let cut = try #require(refusal(#"{"upload_interval":120}"#, running: defaults))
        #expect(cut.reason.contains("189"))
        let limits = JSONValue.object(cut.limits)
        let maxUpload = try #require(limits["upload_interval"]?["max"]?.intValue)
        let minSampling = try #require(limits["sampling_interval"]?["min"]?.intValue)
        #expect(refusal("{\"upload_interval\":\(maxUpload)}", running: defaults) == nil, "the largest safe upload interval is safe")
        #expect(refusal("{\"upload_interval\":\(maxUpload + 1)}", running: defaults) != nil, "and the next one is not")
        #expect(refusal("{\"sampling_interval\":\(minSampling),\"upload_interval\":120}", running: defaults) == nil)
        #expect(refusal("{\"sampling_interval\":\(minSampling - 1),\"upload_interval\":120}", running: defaults) != nil)
        // All ten registers: a backlog of 8 packets no longer serialises under 4 095 bytes (spec §3.6.4).
        let all = Register.allCases.map { "\"\($0.name)\"" }.joined(separator: ",")
        let ten = try #require(refusal("{\"registers\":[\(all)]}", running: defaults))
        #expect(ten.reason.contains("4095"), "\(ten.reason)")
        let fits = try #require(JSONValue.object(ten.limits)["registers"]?["max_count"]?.intValue)
        #expect((1..<10).contains(fits))
        // A change that does not touch these settings is not held back by them.
        let unsafeRunning = JSONValue.object([("sampling_interval", .int(5)), ("upload_interval", .int(300))])
        #expect(refusal(#"{"command_poll_interval":20}"#, running: unsafeRunning) == nil)
        // The boot report's configuration is what is checked, not the defaults.
        let oneRegister = JSONValue.object([("registers", .array([.string("Vac1")]))])
        #expect(refusal(#"{"upload_interval":120}"#, running: oneRegister) == nil)
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
