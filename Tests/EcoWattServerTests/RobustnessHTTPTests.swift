import Crypto
import EcoWattProtocol
import EcoWattSQLite
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// Issue 13 on a live server: hostile numbers, cheap anonymous requests, replay after deletion, flagged device times,
/// fixed statistics labels and the metrics exposition.
@Suite struct RobustnessHTTPTests {
    /// A signed upload of one packet with `metadata` as its decompression metadata and `top` as extra upload fields.
    static func hostileUpload(device: String, nonce: UInt32, top: String, metadata: String) -> String {
        let inner =
            #"{"device_id":"\#(device)",\#(top),"compressed_data":[{"compressed_binary":"AQwSkAA0BHBGHESukCA0BHBGHESxkBA1BIBGHFSv","decompression_metadata":{\#(metadata)}}]}"#
        return SecuredEnvelope.sign(payload: Array(inner.utf8), nonce: nonce, key: FleetKey.firmwareDefault).jsonBody
    }

    @Test func signedUploadsWithExtremeNumbersAreAllAcknowledgedAndTheServerStaysUp() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        let extremes: [String] = [
            "9223372036854775807", "-9223372036854775807", "-1", "0", "4294967296", "1e300", "-1e16", "18446744073709551616",
        ]
        try await test.run { client in
            var nonce: UInt32 = 11_000
            for (index, value) in (0..<150).map({ ($0, extremes[$0 % extremes.count]) }) {
                nonce += 1
                let fields = [
                    #""register_count":\#(value),"sample_count":3,"timestamp":1,"register_layout":[0,1,5,6,7,9]"#,
                    #""register_count":6,"sample_count":\#(value),"timestamp":1,"register_layout":[0,1,5,6,7,9]"#,
                    #""register_count":6,"sample_count":3,"timestamp":\#(value),"register_layout":[0,1,5,6,7,9]"#,
                    #""register_count":6,"sample_count":3,"timestamp":1,"compressed_size_bytes":\#(value),"register_layout":[0,1,5,6,7,9]"#,
                    #""method":"x\#(index)\n","register_count":6,"sample_count":3,"timestamp":3363422140,"register_layout":[0,1,5,6,7,\#(value)]"#,
                ]
                let body = Self.hostileUpload(
                    device: "HOSTILE-1",
                    nonce: nonce,
                    top: #""timestamp":\#(value),"sampling_interval":\#(value)"#,
                    metadata: fields[index % fields.count]
                )
                let response = try await client.postJSON("/aggregated/HOSTILE-1", body)
                #expect(response.status == .ok, "an authentic, well-formed upload always gets 200 (spec §3.6.5)")
            }
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            // The statistics keep a fixed set of method labels, whatever the devices send.
            let stats = try await client.execute(uri: "/api/v1/stats/compression", method: .get, headers: test.operatorHeaders)
            let methods = (stats.json["methods"] as? [String: Any]) ?? [:]
            #expect(Set(methods.keys).isSubset(of: CompressionMarker.methodLabels.union(["other"])), "\(methods.keys)")
        }
    }

    @Test func anonymousRequestsThatChangeNothingCostNoWriteTransaction() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("CHEAP-1", client: client)
            #expect(try await client.postJSON("/devices", #"{"device_id":"CHEAP-1","firmware_version":"1.3.4"}"#).status == .created)
            #expect(try await client.execute(uri: "/ota/check/CHEAP-1?version=1.3.4", method: .get).status == .ok)
            // The binding's upload leaves rollups to compute (the maintenance job runs every 30 s, which a loaded run
            // reaches): computed now. Then the last_seen flush of the registration: wait until no write happened for
            // 2.5 s (a fixed 2.5 s was not enough on a loaded machine).
            await test.server.services.runTelemetryMaintenance()
            var before = test.server.storage.writeCounters.jobs
            for _ in 0..<20 {
                try await Task.sleep(for: .seconds(2.5))
                let now = test.server.storage.writeCounters.jobs
                if now == before { break }
                before = now
            }
            for _ in 0..<20 {
                #expect(try await client.execute(uri: "/ready", method: .get).status == .ok)
                #expect(try await client.execute(uri: "/ota/check/CHEAP-1?version=1.3.4", method: .get).status == .ok)
                #expect(try await client.execute(uri: "/ota/check/UNKNOWN-1?version=1.3.4", method: .get).status == .ok)
                let complete = #"{"version":"1.3.4","status":"success","timestamp":1}"#
                #expect(try await client.postJSON("/ota/CHEAP-1/complete", complete).status == .ok)
                #expect(try await client.execute(uri: "/commands/UNKNOWN-2/poll", method: .get).status == .ok)
                #expect(try await client.execute(uri: "/config/UNKNOWN-3", method: .get).status == .ok)
            }
            // Nor do the periodic sweeps while nothing is due.
            await test.server.commands.sweep()
            await test.server.ota.expireIdleSessions()
            await test.server.boot.expire(nowMs: test.clock.now)
            await test.server.services.runTelemetryMaintenance()  // nothing past retention: it only reads
            #expect(test.server.storage.writeCounters.jobs == before, "120 anonymous requests and four idle sweeps, no write")
        }
        // The initiate's search for events without a session goes through an index, never a scan of them all.
        let plan = try DatabaseInspector(test.server.database).rows(
            "EXPLAIN QUERY PLAN UPDATE ota_events SET session_id = 'x' WHERE device_id = ? AND session_id IS NULL AND received_at_ms >= ?",
            ["D", 0]
        ).map { $0["detail"].string ?? "" }
        #expect(plan.contains { $0.contains("ota_events_unattached") }, "\(plan)")
    }

    @Test func deletingADeviceNeverReopensReplay() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            let accepted = Uploads.body(device: "TOMB-1", nonce: 11_005)
            #expect(try await client.postJSON("/aggregated/TOMB-1", accepted).status == .ok)
            #expect(try await client.execute(uri: "/api/v1/devices/TOMB-1", method: .delete, headers: test.operatorHeaders).status == .noContent)
            #expect(try await client.postJSON("/aggregated/TOMB-1", accepted).status == .unauthorized, "still a replay")
            let older = Uploads.body(device: "TOMB-1", nonce: 11_001)
            #expect(try await client.postJSON("/aggregated/TOMB-1", older).status == .unauthorized)
            #expect(try await client.postJSON("/aggregated/TOMB-1", Uploads.body(device: "TOMB-1", nonce: 11_006)).status == .ok)
            // Deleted again, then the operator resets its nonce: the tombstone goes too.
            #expect(try await client.execute(uri: "/api/v1/devices/TOMB-1", method: .delete, headers: test.operatorHeaders).status == .noContent)
            let reset = try await client.execute(uri: "/api/v1/devices/TOMB-1/nonce", method: .delete, headers: test.operatorHeaders)
            #expect(reset.status == .ok)
            #expect(try await client.postJSON("/aggregated/TOMB-1", Uploads.body(device: "TOMB-1", nonce: 11_001)).status == .ok)
        }
    }

    @Test func implausibleDeviceTimesAreFlaggedNotStored() async throws {
        let test = try await TestServer()
        let now = test.clock.now
        try await test.run { client in
            for time in ["-5", "\(now + 2 * 86_400_000)", "9223372036854775807"] {
                let report = #"{"device_id":"TIME-1","timestamp":\#(time),"power_management":{"enabled":true,"techniques":"0x08"}}"#
                #expect(try await client.postJSON("/power/energy/TIME-1", report).status == .created)
                let fault = #"{"device_id":"TIME-1","timestamp":\#(time),"fault_type":"timeout","success":true}"#
                #expect(try await client.postJSON("/fault/recovery", fault).status == .ok)
            }
            let good = #"{"device_id":"TIME-1","timestamp":\#(now),"power_management":{"enabled":true}}"#
            #expect(try await client.postJSON("/power/energy/TIME-1", good).status == .created)
            let energy = try await client.execute(uri: "/api/v1/devices/TIME-1/reports/energy", method: .get, headers: test.operatorHeaders)
            let reports = try #require(energy.json["items"] as? [[String: Any]])
            #expect(reports.count == 4)
            #expect(reports.filter { $0["device_time_invalid"] as? Bool == true }.count == 3)
            #expect(reports.allSatisfy { $0["device_time"] == nil || ($0["device_time"] as? String)?.hasPrefix("20") == true }, "no year 506713")
            #expect(reports.contains { $0["device_time"] != nil }, "the plausible time is kept")
            let faults = try await client.execute(uri: "/api/v1/devices/TIME-1/reports/faults", method: .get, headers: test.operatorHeaders)
            let events = try #require(faults.json["items"] as? [[String: Any]])
            #expect(events.allSatisfy { $0["device_time_invalid"] as? Bool == true && $0["device_time"] == nil })
        }
    }

    @Test func everyMetricHasHelpAndTypeAndTheProcessIsDescribed() async throws {
        let test = try await TestServer()
        try await test.run { client in
            _ = try await client.postJSON("/aggregated/M-1", #"{"nonce":1}"#)
            _ = try await client.execute(uri: "/commands/UNKNOWN-M/poll", method: .get)
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: test.operatorHeaders).body)
            let lines = text.split(separator: "\n")
            let families = Set(
                lines.filter { !$0.hasPrefix("#") }.compactMap { $0.split(whereSeparator: { $0 == "{" || $0 == " " }).first }
                    .map {
                        String($0).replacingOccurrences(of: "_bucket", with: "").replacingOccurrences(of: "_count", with: "")
                            .replacingOccurrences(of: "_sum", with: "")
                    }
            )
            #expect(families.count > 10)
            for family in families {
                #expect(lines.contains { $0.hasPrefix("# HELP \(family) ") }, "HELP for \(family)")
                #expect(lines.contains { $0.hasPrefix("# TYPE \(family) ") }, "TYPE for \(family)")
            }
            for name in [
                "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds",
                "process_start_time_seconds", "ecowatt_fleet_key_public",
            ] {
                #expect(lines.contains { $0.hasPrefix("\(name) ") }, "\(name)")
            }
            #expect(text.contains(#"ecowatt_client_errors_total{route="/aggregated/{id}",reason="missing_field"} 1"#))
            #expect(text.contains("ecowatt_unknown_device_requests_total 1"))
        }
    }
}
