import EcoWattProtocol
import EcoWattServer
import Foundation
import HummingbirdTesting
import Testing

@Suite struct ConfigHTTPTests {
    static let bootReport =
        #"{"sampling_interval":5,"upload_interval":15,"config_poll_interval":5,"command_poll_interval":10,"firmware_check_interval":6000,"energy_poll_interval":300,"power_management":{"enabled":false,"techniques":8},"compression_enabled":true,"timestamp":1764300000,"registers":["Vac1","Iac1","Ipv1","Ipv2","Temp","Pac"]}"#
    static let ack =
        #"{"status":"applied","timestamp":1764300100,"error_msg":"Configuration updated successfully","power_management":{"enabled":true,"techniques":8,"energy_poll_freq":300000000}}"#

    @Test func onlyValidChangingFieldsAreDeliveredThenAcknowledged() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("CFG-1", client: client)
            #expect(try await client.postJSON("/config/CFG-1/current", Self.bootReport).status == .ok)
            let update = #"""
                {"config_update":{"sampling_interval":10,"upload_interval":900,"command_poll_interval":10,
                 "registers":["Vac1","Pac","Vac1"],"power_management":{"enabled":true,"techniques":"0x08"},
                 "config_poll_interval":2.5,"compression_enabled":false,"energy_poll_interval":60}}
                """#
            let response = try await client.operatorJSON(.put, "/api/v1/devices/CFG-1/config/pending", update, server: test)
            #expect(response.status == .ok)
            let ack = response.json
            #expect((ack["accepted"] as? [String: Any])?.keys.sorted() == ["energy_poll_interval", "sampling_interval"])
            #expect(
                (ack["rejected"] as? [String: String])?.keys.sorted() == [
                    "compression_enabled", "config_poll_interval", "power_management", "registers", "upload_interval",
                ]
            )
            #expect((ack["rejected"] as? [String: String])?["upload_interval"]?.contains("590") == true)
            #expect(ack["unchanged"] as? [String] == ["command_poll_interval"])

            let poll = try await client.execute(uri: "/config/CFG-1", method: .get)
            let text = String(buffer: poll.body)
            #expect(text == #"{"is_pending":true,"pending_config":{"config_update":{"energy_poll_interval":60,"sampling_interval":10}}}"#)
            #expect(try ArduinoJSONPool.bytes(text) <= 3686)  // 4096-byte pool, 10 % margin
            // Still pending until the device acknowledges.
            #expect(try await client.execute(uri: "/config/CFG-1", method: .get).json["is_pending"] as? Bool == true)
            #expect(try await client.postJSON("/config/CFG-1/acknowledge", Self.ack).status == .ok)
            #expect(String(buffer: try await client.execute(uri: "/config/CFG-1", method: .get).body) == #"{"is_pending":false}"#)
            #expect(try await client.postJSON("/config/CFG-1/acknowledge", Self.ack).status == .notFound)

            let history = try await client.execute(uri: "/api/v1/devices/CFG-1/config/history", method: .get, headers: test.operatorHeaders)
            let events = (history.json["items"] as? [[String: Any]])?.map { $0["event"] as? String }
            #expect(events == ["applied", "delivered", "requested", "boot_report"])
            let config = try await client.execute(uri: "/api/v1/devices/CFG-1/config", method: .get, headers: test.operatorHeaders)
            #expect((config.json["running"] as? [String: Any])?["sampling_interval"] as? Int == 10)
        }
    }

    /// Issue 15: against the device's running configuration (its boot report), a change that lets a batch outgrow the
    /// device's 50 samples, its 189 wire bytes or an 8-packet backlog's 4 095 JSON bytes is refused whole, 422, with
    /// the reason and the safe values; nothing is delivered.
    @Test func aConfigurationThatWouldLoseDataIsRefusedWholeWithTheSafeValues() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("CFG-LOSS", client: client)
            #expect(try await client.postJSON("/config/CFG-LOSS/current", Self.bootReport).status == .ok)
            let update = #"{"config_update":{"upload_interval":300,"command_poll_interval":20}}"#
            let refused = try await client.operatorJSON(.put, "/api/v1/devices/CFG-LOSS/config/pending", update, server: test)
            #expect(refused.status == .unprocessableContent)
            #expect(refused.headers[ErrorCode.header] == "data_loss")
            let error = try #require(refused.json["error"] as? [String: Any])
            #expect((error["message"] as? String)?.contains("keeps 50") == true)
            let limits = try #require((error["details"] as? [String: Any])?["safe_limits"] as? [String: Any])
            let maxUpload = try #require((limits["upload_interval"] as? [String: Any])?["max"] as? Int)
            #expect((10..<300).contains(maxUpload))
            #expect(try await client.execute(uri: "/config/CFG-LOSS", method: .get).json["is_pending"] as? Bool == false)
            // The safe value is accepted.
            let safe = #"{"config_update":{"upload_interval":\#(maxUpload)}}"#
            #expect(try await client.operatorJSON(.put, "/api/v1/devices/CFG-LOSS/config/pending", safe, server: test).status == .ok)
        }
    }

    @Test func anUpdateWithNothingValidIsRefusedAndNeverDelivered() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let response = try await client.operatorJSON(
                .put,
                "/api/v1/devices/CFG-2/config/pending",
                #"{"config_update":{"sampling_interval":0,"registers":[]},"create":true}"#,
                server: test
            )
            #expect(response.status == .unprocessableContent)
            let rejected = ((response.json["error"] as? [String: Any])?["details"] as? [String: Any])?["rejected"] as? [String: Any]
            #expect(rejected?.keys.sorted() == ["registers", "sampling_interval"])
            #expect(try await client.execute(uri: "/config/CFG-2", method: .get).json["is_pending"] as? Bool == false)
            let path = "/api/v1/devices/CFG-2/config/pending"
            #expect(try await client.operatorJSON(.put, path, #"{"sampling_interval":5}"#, server: test).status == .unprocessableContent)
            #expect(try await client.operatorJSON(.put, path, "{", server: test).status == .badRequest)
            #expect(try await client.execute(uri: "/api/v1/devices/CFG-2/config/history", method: .get).status == .unauthorized)
        }
    }

    @Test func aPendingConfigThatChangesNothingIsClearedOnceDelivered() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let response = try await client.operatorJSON(
                .put,
                "/api/v1/devices/CFG-3/config/pending",
                #"{"config_update":{"sampling_interval":10,"registers":["Vac1","Pac"]},"create":true}"#,
                server: test
            )
            #expect(response.status == .ok)
            // The device reboots already running exactly that (e.g. configured by hand).
            try await test.bind("CFG-3", client: client)
            let report = #"{"sampling_interval":10,"upload_interval":15,"registers":["Pac","Vac1"]}"#
            #expect(try await client.postJSON("/config/CFG-3/current", report).status == .ok)
            #expect(try await client.execute(uri: "/config/CFG-3", method: .get).json["is_pending"] as? Bool == true)
            // It sends no acknowledgement for a no-op, so the server does not wait for one.
            #expect(try await client.execute(uri: "/config/CFG-3", method: .get).json["is_pending"] as? Bool == false)
            // The same values again are "unchanged" and create nothing.
            let again = try await client.operatorJSON(
                .put,
                "/api/v1/devices/CFG-3/config/pending",
                #"{"config_update":{"sampling_interval":10}}"#,
                server: test
            )
            #expect(again.json["unchanged"] as? [String] == ["sampling_interval"])
            #expect(try await client.execute(uri: "/config/CFG-3", method: .get).json["is_pending"] as? Bool == false)
        }
    }
}
