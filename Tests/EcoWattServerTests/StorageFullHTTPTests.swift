import EcoWattSQLite
import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import Testing

/// The disk fills up under a running server. SQLite's `max_page_count`, capped at the file's size on the writer's
/// connection, makes SQLite answer every write that needs a new page with `SQLITE_FULL` ("database or disk is full"),
/// as a full disk does (measured on a full 2 MiB tmpfs under `ecowatt simulate`: the same error from `COMMIT`; before
/// this test's fixes energy reports and device registrations answered 500, `/ready` said ready, and 40 s wrote 2 896 log
/// lines).
@Suite struct StorageFullHTTPTests {
    @Test func aFullDiskIs503OnEveryWriteNotReadyWithTheReasonAFewLogLinesAndTheRetriesAreStoredOnceThereIsRoom() async throws {
        let log = LogLines()
        let server = try await TestServer(
            limits: ["server_error_log_burst": 4, "client_error_log_interval_seconds": 3_600],
            logLines: log
        )
        try await server.run { client in
            let start = ContinuousClock.now
            try await server.bind("FULL-1", client: client)
            // The writer's connection is the pool's writer, which the inspector writes through.
            let database = DatabaseInspector(server.server.database)
            let pages = try #require(try database.int("PRAGMA page_count"))
            try database.writeBypassingTheServer(["PRAGMA max_page_count = \(pages)"])
            // New devices' uploads until one needs a page the file does not have.
            var refused: (device: String, body: String)?
            for index in 1...2_000 where refused == nil {
                let device = "FULL-NEW-\(index)"
                let body = Uploads.body(device: device, nonce: 1_001)
                let response = try await client.postJSON("/aggregated/\(device)", body)
                if response.status == .serviceUnavailable {
                    #expect(String(buffer: response.body).contains("Upload not stored, retry later"))
                    refused = (device, body)
                } else {
                    #expect(response.status == .ok, "upload \(index): \(response.status)")
                }
            }
            let full = try #require(refused, "the capped database never filled up")

            // Every route whose write does not fit answers 503 with a reason and without the database's text, never 500
            // (a write that fits in a page with room still succeeds, as on a real disk).
            let energy = #"{"device_id":"FULL-1","timestamp":1,"power_management":{"enabled":true}}"#
            var reportRefused = false
            for _ in 0..<2_000 where !reportRefused {
                let report = try await client.postJSON("/power/energy/FULL-1", energy)
                #expect([.created, .serviceUnavailable].contains(report.status), "energy report: \(report.status)")
                if report.status == .serviceUnavailable {
                    reportRefused = true
                    #expect(String(buffer: report.body).contains("retry later") && !String(buffer: report.body).contains("SQLite"))
                }
            }
            #expect(reportRefused)
            var createRefused = false
            for index in 0..<2_000 where !createRefused {
                let created = try await client.operatorJSON(.post, "/api/v1/devices", #"{"device_id":"FULL-API-\#(index)"}"#, server: server)
                #expect([.created, .serviceUnavailable].contains(created.status), "device creation: \(created.status)")
                if created.status == .serviceUnavailable {
                    createRefused = true
                    #expect((created.json["error"] as? [String: Any])?["code"] as? String == "storage", "\(String(buffer: created.body))")
                }
            }
            #expect(createRefused)
            // Not ready once writes keep failing (a single failed commit is not enough).
            for _ in 0..<5 { #expect(try await client.postJSON("/aggregated/\(full.device)", full.body).status == .serviceUnavailable) }

            let notReady = try await client.execute(uri: "/ready", method: .get)
            #expect(notReady.status == .serviceUnavailable)
            #expect(String(buffer: notReady.body).contains("writes failing"), "\(String(buffer: notReady.body))")
            #expect(String(buffer: notReady.body).contains("database or disk is full"), "the cause, not the abort it led to")

            // The log: the writer's run of failures (a new one only after 10 s without a failed commit: the fills above
            // commit for a while on a busy machine), and at most the burst of failing requests and their causes.
            let runs = log.matching("writes are failing").count
            #expect(runs >= 1 && runs <= 1 + Int((ContinuousClock.now - start) / .seconds(10)), "\(log.matching("writes are"))")
            let inFull = log.matching("status=503").count + log.matching("upload not stored").count + log.matching("storage failure").count
            #expect(inFull <= 4, "server errors logged in full: \(inFull)")
            #expect(log.matching("unhandled error").isEmpty)
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: server.operatorHeaders)
            let failedLine = String(buffer: metrics.body).split(separator: "\n").first { $0.hasPrefix("ecowatt_storage_failed_transactions ") }
            #expect(failedLine.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 >= 3 } == true, "\(failedLine ?? "no metric")")

            // Room again: the refused upload's retry is stored (it was not recorded: no replay), and the server is ready.
            try database.writeBypassingTheServer(["PRAGMA max_page_count = 4294967294"])
            #expect(try await client.postJSON("/aggregated/\(full.device)", full.body).status == .ok)
            #expect(try await client.postJSON("/aggregated/\(full.device)", full.body).status == .unauthorized, "now a replay")
            #expect(try await client.postJSON("/power/energy/FULL-1", energy).status == .created)
            #expect(server.server.ingest.statistics.storageFailures >= 2)
            // Ready again once no commit failed for 10 s.
            let deadline = ContinuousClock.now + .seconds(60)
            var ready = try await client.execute(uri: "/ready", method: .get)
            while ready.status != .ok, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
                ready = try await client.execute(uri: "/ready", method: .get)
            }
            #expect(ready.status == .ok, "\(String(buffer: ready.body))")
            #expect(try await client.postJSON("/power/energy/FULL-1", energy).status == .created)
            #expect(log.matching("writes commit again").count == runs, "each run's end, at the first commit after it")
        }
        // The summary of what was not logged in full, at shutdown.
        let summary = log.matching("server errors not logged in full")
        #expect(summary.count == 1 && summary[0].contains("/aggregated/{id} storage="), "\(summary)")
    }
}
