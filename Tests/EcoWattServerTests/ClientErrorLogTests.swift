import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

/// Issue 13: a flood of bad requests is a few log lines, not one per request, and device-supplied text cannot forge a
/// log line. The real binary's log (default level `info`) is read back.
@Suite(.serialized) struct ClientErrorLogTests {
    @Test func aFloodOfBadRequestsIsSummedUpAndDeviceTextIsEscaped() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        try await ProcessTests.prepareFirmware(root: root, version: "7.0.0")
        let port = LoopbackPort.free()
        let server = try await ServerProcess(
            root: root,
            port: port,
            extraArguments: ["--limit", "client_error_log_burst=5", "--limit", "client_error_log_interval_seconds=3"]
        )
        // A device's progress message with a newline and a forged log line after it: logged escaped.
        #expect(try await server.post("/aggregated/LOG-OTA", Uploads.body(device: "LOG-OTA", nonce: 11001)) == 200)
        #expect(try await server.post("/ota/initiate/LOG-OTA", #"{"firmware_version":"7.0.0"}"#) == 200)
        let forged = #"{"phase":"failed","progress":3,"message":"boom\n2026-12-05T00:00:00+0000 critical ecowatt: FORGED"}"#
        #expect(try await server.post("/ota/LOG-OTA/progress", forged) == 200)
        let start = ContinuousClock.now
        let badMAC = Uploads.body(device: "LOG-1", nonce: 11001).replacingOccurrences(of: #""mac":""#, with: #""mac":"0"#)
        try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            for index in 0..<400 {
                let body = index % 2 == 0 ? badMAC : #"{"nonce":1,"payload":"#
                let response = try await client.post(
                    "/aggregated/LOG-1",
                    headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: body)
                )
                #expect((400..<500).contains(response.head.status.code))
            }
        }
        // Every interval that saw errors logs at most 5 in full, and one summary counts the rest: all 400 accounted for.
        let windows = Int((ContinuousClock.now - start).components.seconds / 3) + 2
        try await Task.sleep(for: .seconds(3.5))
        let log = server.log
        let lines = log.split(separator: "\n")
        let full = lines.filter { $0.contains("client error") && !$0.contains("not logged in full") }
        let summaries = lines.filter { $0.contains("client errors not logged in full") }
        #expect(full.count <= 5 * windows, "\(full.count) client errors logged in full in \(windows) intervals")
        let notLogged = summaries.compactMap { $0.split(separator: " ").first { $0.hasPrefix("not_logged=") }?.dropFirst(11) }
            .compactMap { Int($0) }.reduce(0, +)
        #expect(full.count + notLogged == 400, "\(full.count) in full, \(notLogged) summed up")
        #expect(log.contains(#"message=boom\n2026-12-05T00:00:00+0000 critical ecowatt: FORGED"#), "the device's text, escaped")
        #expect(!log.split(separator: "\n").contains { $0.hasPrefix("2026-12-05T00:00:00+0000 critical") }, "no forged line")
        #expect(lines.count <= 6 * windows + 15, "the whole log of 400 bad requests: \(lines.count) lines")
        let metrics = try await LoopbackHTTP.request(
            port: port,
            path: "/metrics",
            headers: ["Authorization": "Bearer \(try ProcessTests.operatorToken(root))"]
        )
        #expect(metrics.body.contains(#"ecowatt_client_errors_total{route="/aggregated/{id}",reason="mac"} 200"#))
        #expect(metrics.body.contains(#"ecowatt_client_errors_total{route="/aggregated/{id}",reason="malformed"} 200"#))
        try await server.stop(signal: SIGTERM)
    }
}
