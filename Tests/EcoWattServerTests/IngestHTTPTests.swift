import Crypto
import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

/// Builds firmware-shaped uploads for tests.
enum Uploads {
    /// A one-packet bit-pack upload (the spec §3.6.3 example blob) for `device` at `nonce`. Its packet stamp is the
    /// example's for nonce 11001 and 15 s later per nonce after it, so that every upload carries a new batch (the same
    /// batch under a new nonce is a resend, acknowledged and not stored again).
    static func body(
        device: String,
        nonce: UInt32,
        key: SymmetricKey = FleetKey.firmwareDefault,
        uploadTime: Int = 1_764_300_015
    )
        -> String
    {
        let stamp = UInt32(truncatingIfNeeded: 3_363_422_140 + (Int64(nonce) - 11_001) * 15_000)
        let inner =
            #"{"device_id":"\#(device)","timestamp":\#(uploadTime),"data_type":"compressed_sensor_batch","total_samples":1,"sampling_interval":5,"register_mapping":{"0":"Vac1","1":"Iac1","2":"Ipv1","3":"Ipv2","4":"Temp","5":"Pac"},"compressed_data":[{"compressed_binary":"AQwSkAA0BHBGHESukCA0BHBGHESxkBA1BIBGHFSv","decompression_metadata":{"method":"bitpack","register_count":6,"sample_count":3,"original_size_bytes":36,"compressed_size_bytes":30,"timestamp":\#(stamp),"register_layout":[0,1,5,6,7,9]},"performance_metrics":{"academic_ratio":0.833333313,"traditional_ratio":1.200000048,"compression_time_us":0,"savings_percent":16.66666794,"lossless_verified":false}}],"session_summary":{"total_original_bytes":36,"total_compressed_bytes":30,"overall_academic_ratio":0.833333313,"overall_savings_percent":16.66666794}}"#
        return SecuredEnvelope.sign(payload: Array(inner.utf8), nonce: nonce, key: key).jsonBody
    }

    /// Arrival time that anchors the example's 32-bit timestamp (upload at 1764300015 s).
    static let exampleArrivalMs: Int64 = 1_764_300_015_200
}

@Suite struct IngestHTTPTests {
    @Test func specExampleUploadIsStoredAndQueryable() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            let response = try await client.postJSON("/aggregated/ESP32_001", Uploads.body(device: "ESP32_001", nonce: 11001))
            #expect(response.status == .ok)
            #expect(response.json["samples_stored"] as? Int == 3)

            let latest = try await client.execute(uri: "/api/v1/devices/ESP32_001/telemetry/latest", method: .get, headers: test.operatorHeaders)
            #expect(latest.status == .ok)
            let sample = latest.json["sample"] as? [String: Any]
            let registers = sample?["registers"] as? [String: Double]
            #expect(registers?["Vac1"] == 230.5)
            #expect(registers?["Pac"] == 1199)
            #expect(sample?["raw_values"] as? [Int] == [2305, 53, 72, 70, 453, 1199])
            #expect(sample?["timestamp_ms"] as? Int64 == 1_764_300_013_500)
            #expect((latest.json["registers"] as? [[String: Any]])?.first?["unit"] as? String == "V")

            let history = try await client.execute(
                uri: "/api/v1/devices/ESP32_001/telemetry?start=2025-11-28T03:20:00Z&end=2025-11-28T03:20:15Z&limit=10",
                method: .get,
                headers: test.operatorHeaders
            )
            #expect(history.status == .ok)
            let data = history.json["samples"] as? [[String: Any]]
            #expect(data?.count == 3)
            // Samples are spaced by the sampling interval, ending at the packet's last sample.
            #expect(data?.map { $0["timestamp_ms"] as? Int64 } == [1_764_300_003_500, 1_764_300_008_500, 1_764_300_013_500])
            #expect((data?.first?["registers"] as? [String: Double])?["Iac1"] == 5.2)

            // Longer windows answer with rollups (once the background job made them), and say so.
            await test.server.services.runTelemetryMaintenance()
            let twoDays = try await client.execute(
                uri: "/api/v1/devices/ESP32_001/telemetry?start=2025-11-26T23:33:20Z&end=2025-11-29T07:06:40Z",
                method: .get,
                headers: test.operatorHeaders
            )
            #expect(twoDays.json["resolution"] as? String == "minute")
            let minute = try #require((twoDays.json["rollups"] as? [[String: Any]])?.first)
            #expect(minute["timestamp_ms"] as? Int64 == 1_764_300_000_000 && minute["sample_count"] as? Int == 3)
            #expect((minute["minimum"] as? [String: Double])?["Pac"] != nil)
            for (resolution, count) in [("hour", 1), ("raw", 3)] {
                let forced = try await client.execute(
                    uri: "/api/v1/devices/ESP32_001/telemetry?start=2025-11-26T23:33:20Z&end=2025-11-29T07:06:40Z&resolution=\(resolution)",
                    method: .get,
                    headers: test.operatorHeaders
                )
                let items = (forced.json["samples"] ?? forced.json["rollups"]) as? [Any]
                #expect(forced.json["resolution"] as? String == resolution && items?.count == count)
            }
            #expect(history.json["resolution"] as? String == "raw", "a window up to a day is raw")
            let unknown = try await client.execute(
                uri: "/api/v1/devices/ESP32_001/telemetry?resolution=second",
                method: .get,
                headers: test.operatorHeaders
            )
            #expect(unknown.status == .badRequest)

            let bad = try await client.execute(
                uri: "/api/v1/devices/ESP32_001/telemetry?start=yesterday",
                method: .get,
                headers: test.operatorHeaders
            )
            #expect(bad.status == .badRequest)
            #expect((bad.json["error"] as? [String: Any])?["code"] as? String == "invalid")
        }
    }

    /// Issue 15: `"encrypted":true` is outside the MAC and the firmware never sends it: refused, nonce untouched.
    @Test func anEncryptedEnvelopeIsRefusedAndConsumesNoNonce() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            let body = Uploads.body(device: "ENC-1", nonce: 11001)
            let encrypted = body.replacingOccurrences(of: #""encrypted":false"#, with: #""encrypted":true"#)
            let refused = try await client.postJSON("/aggregated/ENC-1", encrypted)
            #expect(refused.status == .badRequest)
            #expect((refused.json["error"] as? String)?.lowercased().contains("encrypted payloads are not supported") == true)
            #expect(refused.headers[ErrorCode.header] == "encrypted")
            #expect(try await client.postJSON("/aggregated/ENC-1", body).status == .ok, "the same nonce is still unused")
        }
    }

    @Test func identicalConcurrentUploadsAreAcceptedExactlyOnce() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        let body = Uploads.body(device: "RACE-1", nonce: 20000)
        try await test.run { client in
            let port = try #require(client.port)
            let statuses = try await Self.concurrentPosts(port: port, path: "/aggregated/RACE-1", body: body, count: 24)
            #expect(statuses.filter { $0 == 200 }.count == 1)
            #expect(statuses.filter { $0 == 401 }.count == 23)
            let samples = try DatabaseInspector(test.server.database).packets(deviceID: "RACE-1").map { $0.packet.samples?.count ?? 0 }.reduce(0, +)
            #expect(samples == 3)
        }
    }

    @Test func theIngestCacheStaysWithinItsLimitAndAnEvictedDeviceIsJudgedByItsStoredState() async throws {
        let test = try await TestServer(limits: ["ingest_cache_devices": 16])
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            for device in 0..<40 {
                let response = try await client.postJSON("/aggregated/CACHE-\(device)", Uploads.body(device: "CACHE-\(device)", nonce: 11001))
                #expect(response.status == .ok, "CACHE-\(device)")
            }
            let cached = test.server.services.ingest.cachedDevices
            #expect(cached <= 16 && cached >= 14, "\(cached) states in memory")
            // CACHE-0 was dropped first: its nonce comes back from the store, so a replay is still refused.
            let replay = try await client.postJSON("/aggregated/CACHE-0", Uploads.body(device: "CACHE-0", nonce: 11001))
            #expect(replay.status == .unauthorized)
            let next = try await client.postJSON("/aggregated/CACHE-0", Uploads.body(device: "CACHE-0", nonce: 11002))
            #expect(next.status == .ok)
            #expect(test.server.services.ingest.cachedDevices <= 16)
        }
    }

    static func concurrentPosts(port: Int, path: String, body: String, count: Int) async throws -> [UInt16] {
        try await withThrowingTaskGroup(of: UInt16.self) { group in
            for _ in 0..<count {
                group.addTask {
                    let client = TestClient(host: "127.0.0.1", port: port)
                    client.connect()
                    defer { Task { try? await client.shutdown() } }
                    let response = try await client.post(
                        path,
                        headers: [.contentType: "application/json"],
                        body: ByteBuffer(string: body)
                    )
                    return UInt16(response.head.status.code)
                }
            }
            var statuses = [UInt16]()
            for try await status in group { statuses.append(status) }
            return statuses
        }
    }

    @Test func deviceIDMustMatchTheURL() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let body = Uploads.body(device: "ESP32_001", nonce: 11001)
            let response = try await client.postJSON("/aggregated/ESP32_999", body)
            #expect(response.status == .unauthorized)
            #expect((response.json["error"] as? String)?.contains("does not match") == true, "\(response.json)")
            // The refused upload did not consume the nonce of either device.
            #expect(try await client.postJSON("/aggregated/ESP32_001", body).status == .ok)
        }
    }

    @Test func perDeviceKeyOverridesTheFleetKey() async throws {
        let test = try await TestServer()
        let key = SymmetricKey(data: Array(repeating: UInt8(7), count: 32))
        try await test.run { client in
            // The writer commits only while the application runs, so the key is set inside `run`.
            try await test.server.store.setDeviceKey(deviceID: "KEYED-1", key: Array(repeating: 7, count: 32))
            await test.server.ingest.refreshKeys()
            let fleetSigned = try await client.postJSON("/aggregated/KEYED-1", Uploads.body(device: "KEYED-1", nonce: 1))
            #expect(fleetSigned.status == .unauthorized)
            let ownKey = try await client.postJSON("/aggregated/KEYED-1", Uploads.body(device: "KEYED-1", nonce: 2, key: key))
            #expect(ownKey.status == .ok)
        }
    }

    @Test func operatorNonceResetLetsAWipedDeviceUploadAgain() async throws {
        let test = try await TestServer()
        try await test.run { client in
            #expect(try await client.postJSON("/aggregated/WIPED", Uploads.body(device: "WIPED", nonce: 50000)).status == .ok)
            // The device's NVS was erased: it starts again at 11001 and is refused as a replay.
            #expect(try await client.postJSON("/aggregated/WIPED", Uploads.body(device: "WIPED", nonce: 11001)).status == .unauthorized)
            let unauthorized = try await client.execute(uri: "/api/v1/devices/WIPED/nonce", method: .delete)
            #expect(unauthorized.status == .unauthorized)
            let reset = try await client.execute(uri: "/api/v1/devices/WIPED/nonce", method: .delete, headers: test.operatorHeaders)
            #expect(reset.status == .ok)
            #expect(reset.json["had_nonce_state"] as? Bool == true)
            #expect(try await client.postJSON("/aggregated/WIPED", Uploads.body(device: "WIPED", nonce: 11002)).status == .ok)

            let stats = try await client.execute(uri: "/api/v1/stats/security", method: .get, headers: test.operatorHeaders)
            let statistics = stats.json as [String: Any]?
            #expect(statistics?["successful_validations"] as? Int == 2)
            #expect(statistics?["replay_attacks_blocked"] as? Int == 1)
        }
    }

    @Test func limitsAndErrorsAreJSON() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let big = String(repeating: "x", count: 70_000)
            let tooLarge = try await client.postJSON("/aggregated/BIG", #"{"nonce":1,"payload":"\#(big)"}"#)
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.json["success"] as? Bool == false)

            let notFound = try await client.execute(uri: "/no/such/route", method: .get)
            #expect(notFound.status == .notFound)
            #expect(notFound.json["success"] as? Bool == false)

            let noToken = try await client.execute(uri: "/api/v1/devices/ESP32_001/telemetry/latest", method: .get)
            #expect(noToken.status == .unauthorized)
            let wrongToken = try await client.execute(
                uri: "/api/v1/devices/ESP32_001/telemetry/latest",
                method: .get,
                headers: [.authorization: "Bearer nope"]
            )
            #expect(wrongToken.status == .unauthorized)
            let unknownDevice = try await client.execute(uri: "/api/v1/devices/NOBODY/telemetry/latest", method: .get, headers: test.operatorHeaders)
            #expect(unknownDevice.status == .notFound)

            let health = try await client.execute(uri: "/health", method: .get)
            #expect(health.status == .ok)
            #expect(health.json["status"] as? String == "healthy")

            let bootNotJSON = try await client.postJSON("/config/ESP32_001/current", "hello")
            #expect(bootNotJSON.status == .badRequest)
        }
    }

    @Test func aBootReportOpensTheRebootHypothesisWithoutDiscardingTheModel() async throws {
        let test = try await TestServer()
        try await test.run { client in
            _ = try await client.postJSON("/aggregated/BOOT-1", Uploads.body(device: "BOOT-1", nonce: 1))
            let before = try await test.server.store.ingestState(deviceID: "BOOT-1")
            #expect(before.stream.entries.count == 1)
            let report = #"{"sampling_interval":5,"upload_interval":15,"registers":["Vac1"]}"#
            #expect(try await client.postJSON("/config/BOOT-1/current", report).status == .ok)
            let after = try await test.server.store.ingestState(deviceID: "BOOT-1")
            #expect(after.stream.hypotheses[0] == before.stream.hypotheses[0], "an unsigned signal never discards the model")
            #expect(after.stream.hypotheses.count == 2)
            #expect(after.stream.hypotheses[1].context == TemporalContext())
            #expect(after.lastNonce == 1)
        }
    }
}
