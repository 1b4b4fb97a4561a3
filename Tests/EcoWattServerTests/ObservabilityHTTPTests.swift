import EcoWattProtocol
import EcoWattServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct ObservabilityHTTPTests {
    /// Parses Prometheus text exposition: `# HELP`/`# TYPE` comments and `name{labels} value` samples. Fails on anything
    /// else.
    static func parse(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            try #require(parts.count == 2, "not a sample line: \(line)")
            let series = String(parts[0])
            try #require(
                series.range(of: #"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})?$"#, options: .regularExpression) != nil,
                "bad series \(series)"
            )
            // `as Double?`: without it Swift Testing wrongly warns that this `Double(_:)` never returns nil.
            samples[series] = try #require(Double(parts[1]) as Double?, "bad value in \(line)")
        }
        return samples
    }

    static func scrape(_ client: some TestClientProtocol, _ test: TestServer) async throws -> [String: Double] {
        let response = try await client.execute(uri: "/metrics", method: .get, headers: test.operatorHeaders)
        #expect(response.status == .ok)
        #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
        return try parse(String(buffer: response.body))
    }

    @Test func metricsAreValidPrometheusTextAndMoveWithTraffic() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .unauthorized)
            // The scheme is case-insensitive (RFC 9110); the token is not, and other schemes are refused.
            for scheme in ["bearer", "BEARER", "Bearer"] {
                let headers: HTTPFields = [.authorization: "\(scheme) \(test.server.operatorToken)"]
                #expect(try await client.execute(uri: "/metrics", method: .get, headers: headers).status == .ok, "\(scheme)")
            }
            let wrongCase: HTTPFields = [.authorization: "Bearer \(test.server.operatorToken.uppercased())"]
            #expect(try await client.execute(uri: "/metrics", method: .get, headers: wrongCase).status == .unauthorized)
            let basic: HTTPFields = [.authorization: "Basic \(test.server.operatorToken)"]
            #expect(try await client.execute(uri: "/metrics", method: .get, headers: basic).status == .unauthorized)
            let before = try await Self.scrape(client, test)
            #expect(try await client.postJSON("/aggregated/M-1", Uploads.body(device: "M-1", nonce: 5)).status == .ok)
            #expect(try await client.postJSON("/aggregated/M-1", Uploads.body(device: "M-1", nonce: 5)).status == .unauthorized)
            #expect(
                try await client.postJSON("/aggregated/M-1", Uploads.body(device: "M-1", nonce: 6, key: .init(size: .bits256))).status
                    == .unauthorized
            )
            for _ in 0..<3 { _ = try await client.execute(uri: "/health", method: .get) }
            let after = try await Self.scrape(client, test)
            func delta(_ series: String) -> Double { (after[series] ?? 0) - (before[series] ?? 0) }
            #expect(delta("ecowatt_uploads_accepted_total") == 1)
            #expect(delta(#"ecowatt_uploads_rejected_total{reason="replay"}"#) == 1)
            #expect(delta(#"ecowatt_uploads_rejected_total{reason="mac"}"#) == 1)
            #expect(delta("ecowatt_samples_stored_total") == 3)
            // The accepted upload committed at least one write in at least one transaction.
            #expect(delta("ecowatt_storage_writes") >= 1)
            #expect(delta("ecowatt_storage_transactions") >= 1)
            #expect((after["ecowatt_storage_writes"] ?? 0) >= (after["ecowatt_storage_transactions"] ?? 1))
            #expect(delta(#"ecowatt_packets_total{marker="0x01"}"#) == 1)
            #expect(delta(#"ecowatt_http_requests_total{route="/health",method="GET",status="200"}"#) == 3)
            #expect(delta(#"ecowatt_http_requests_total{route="/aggregated/{id}",method="POST",status="401"}"#) == 2)
            #expect(after.keys.contains { $0.hasPrefix(#"ecowatt_http_request_duration_seconds_bucket{route="/aggregated/{id}""#) })
            #expect(after["ecowatt_devices_online"] == 1)
            #expect(after["ecowatt_ota_active_sessions"] == 0)
            #expect(!after.keys.contains { $0.contains("M-1") }, "no device ids in series")
            // Disk usage per table, measured at start (dbstat): the packets table and the database file are there.
            #expect((after[#"ecowatt_database_bytes{table="telemetry_chunks"}"#] ?? 0) >= 4096)
            #expect((after[#"ecowatt_database_file_bytes{file="ecowatt.sqlite"}"#] ?? 0) > 0)
        }
    }

    @Test func statsRoutesReportRealCounters() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            for nonce in 1...3 {
                #expect(try await client.postJSON("/aggregated/S-1", Uploads.body(device: "S-1", nonce: UInt32(nonce))).status == .ok)
            }
            let compression = try await client.execute(uri: "/api/v1/stats/compression", method: .get, headers: test.operatorHeaders)
            let statistics = compression.json
            #expect(statistics["total_packets"] as? Int == 3 && statistics["decoded_packets"] as? Int == 3)
            let bitpack = try #require((statistics["methods"] as? [String: Any])?["bitpack"] as? [String: Any])
            #expect(bitpack["bytes_original"] as? Int == 108 && bitpack["bytes_compressed"] as? Int == 90)
            #expect((bitpack["ratio"] as? Double).map { abs($0 - 90.0 / 108.0) < 1e-9 } == true)
            let all = try await client.execute(uri: "/api/v1/stats", method: .get, headers: test.operatorHeaders)
            let combined = all.json
            #expect((combined["security"] as? [String: Any])?["successful_validations"] as? Int == 3)
            #expect(combined["ota"] is [String: Any] && combined["commands"] is [String: Any])
        }
    }

    @Test func readinessChecksTheWriterAndTheKeys() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let ready = try await client.execute(uri: "/ready", method: .get)
            #expect(ready.status == .ok)
            #expect(((ready.json["checks"] as? [String: Any])?["database"] as? String)?.hasPrefix("readable; writer running") == true)
            // The feed's state is reported and never makes the server unready (this test server runs without MQTT).
            #expect((ready.json["checks"] as? [String: Any])?["mqtt"] as? String == "disabled")
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
        }
        // Unusable keys: the server runs, but is not ready and refuses uploads of firmware.
        let keys = test.directory.appendingPathComponent("keys/aes_firmware_key.bin")
        try Data([1, 2, 3]).write(to: keys)
        let broken = try await TestServer(directory: test.directory)
        try await broken.run { client in
            let ready = try await client.execute(uri: "/ready", method: .get)
            #expect(ready.status == .serviceUnavailable)
            #expect(((ready.json["checks"] as? [String: Any])?["firmware_keys"] as? String)?.contains("32 bytes") == true)
        }
    }
}
