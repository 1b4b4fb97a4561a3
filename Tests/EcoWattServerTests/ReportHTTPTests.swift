import EcoWattServer
import Foundation
import HummingbirdTesting
import Testing

@Suite struct ReportHTTPTests {
    @Test func energyReportsAcceptTheFirmwaresNonFiniteNumbers() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let nan =
                #"{"device_id":"PWR","timestamp":1764300000123,"power_management":{"enabled":true,"techniques":"0x08","avg_current_ma":nan,"energy_saved_mah":-inf,"peripheral_savings_mah":1.25,"uptime_ms":0,"high_perf_ms":0,"normal_ms":0,"low_power_ms":0,"sleep_ms":0}}"#
            #expect(try await client.postJSON("/power/energy/PWR", nan).status == .created)
            let normal =
                #"{"device_id":"PWR","timestamp":1764300300123,"power_management":{"enabled":false,"techniques":"0x00","avg_current_ma":85.50,"energy_saved_mah":12.00,"peripheral_savings_mah":3.10,"uptime_ms":300000,"high_perf_ms":1000,"normal_ms":290000,"low_power_ms":9000,"sleep_ms":0}}"#
            #expect(try await client.postJSON("/power/energy/PWR", normal).status == .created)
            #expect(try await client.postJSON("/power/energy/PWR", #"{"device_id":"PWR"}"#).status == .badRequest)
            #expect(try await client.postJSON("/power/energy/PWR", "{nan}").status == .badRequest)

            let list = try await client.execute(uri: "/api/v1/devices/PWR/reports/energy", method: .get, headers: test.operatorHeaders)
            let reports = try #require(list.json["items"] as? [[String: Any]])
            try #require(reports.count == 2)
            #expect(reports[0]["avg_current_ma"] as? Double == 85.5)
            #expect(reports[0]["techniques"] as? Int == 0)
            #expect(reports[1]["avg_current_ma"] == nil, "a NaN the device printed is absent")
            #expect(reports[1]["techniques"] as? Int == 8)
            #expect(reports[1]["techniques_list"] as? [String] == ["peripheral_gating"])
            #expect(reports[1]["device_time"] as? String == "2025-11-28T03:20:00.123Z")
            let since = try await client.execute(uri: "/api/v1/devices/PWR/reports/energy?since=2w", method: .get, headers: test.operatorHeaders)
            #expect(since.status == .badRequest)
        }
    }

    @Test func faultRecoveryEventsAreStoredAndSummarised() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let ok =
                #"{"device_id":"FLT","timestamp":1764300000,"fault_type":"crc_error","recovery_action":"retry_read","success":true,"details":"crc_error detected and recovered after 1 retries","retry_count":1}"#
            let bad =
                #"{"device_id":"FLT","timestamp":1764300010,"fault_type":"timeout","recovery_action":"retry_read","success":false,"details":"timeout detected, recovery FAILED after 3 retries","retry_count":3}"#
            #expect(try await client.postJSON("/fault/recovery", ok).status == .ok)
            #expect(try await client.postJSON("/fault/recovery", bad).status == .ok)
            #expect(try await client.postJSON("/fault/recovery", #"{"device_id":"FLT","fault_type":"x"}"#).status == .badRequest)
            let events = try await client.execute(uri: "/api/v1/devices/FLT/reports/faults", method: .get, headers: test.operatorHeaders)
            #expect(events.json["total"] as? Int == 2)
            #expect(events.json["successful"] as? Int == 1)
            #expect((events.json["items"] as? [[String: Any]])?.first?["fault_type"] as? String == "timeout")
        }
    }
}
