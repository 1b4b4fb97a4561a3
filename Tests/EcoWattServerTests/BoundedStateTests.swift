import EcoWattProtocol
import EcoWattSQLite
import EcoWattTestSupport
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

/// Issue 13: anonymous requests cannot grow the server's state without bound. The real binary runs with small caps;
/// floods from distinct ids (several times each cap) leave the database, the diagnostics directory and the process's
/// memory within budget, while a verified device, its OTA session and a device registered afterwards are unaffected.
@Suite(.serialized) struct BoundedStateTests {
    static let limits: [String: Int] = [
        "max_pending_devices": 50, "pending_rows_per_device": 2, "config_history_per_device": 5, "config_history_total": 100,
        "fault_events_per_device": 5, "fault_events_total": 100, "power_reports_per_device": 5, "power_reports_total": 100,
        "ota_events_per_session": 5, "ota_events_total": 100, "ota_sessions_per_device": 2, "ota_sessions_total": 40,
        "diagnostics_total_bytes": 65_536, "max_active_ota_sessions": 20, "held_messages_per_device": 3,
        "held_messages_total": 100,
    ]

    /// Every kind of unsigned write, `count` times from distinct ids (plus repeats from one id), and polls that must store
    /// nothing. Returns the statuses seen.
    static func flood(_ port: Int, prefix: String, count: Int) async throws -> [UInt: Int] {
        let diagnostics = #"{"free_heap":150000,"note":""# + String(repeating: "x", count: 1000) + #""}"#
        return try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            var statuses: [UInt: Int] = [:]
            func post(_ path: String, _ body: String) async throws {
                let response = try await client.post(path, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
                statuses[UInt(response.head.status.code), default: 0] += 1
            }
            func get(_ path: String) async throws {
                statuses[UInt(try await client.get(path).head.status.code), default: 0] += 1
            }
            for index in 0..<count {
                let id = "\(prefix)-\(index)"
                try await post("/devices", #"{"device_id":"\#(id)","device_name":"\#(String(repeating: "n", count: 120))"}"#)
                try await post("/config/\(id)/current", #"{"sampling_interval":5,"upload_interval":15,"registers":["Vac1"]}"#)
                try await post("/fault/recovery", #"{"device_id":"\#(id)","timestamp":1,"fault_type":"crc_error","success":true}"#)
                try await post("/power/energy/\(id)", #"{"device_id":"\#(id)","timestamp":1,"power_management":{"enabled":true}}"#)
                try await post("/ota/\(id)/progress", #"{"phase":"downloading","progress":0,"message":"Starting firmware download..."}"#)
                try await post("/diagnostics/\(id)", diagnostics)
                if index % 2 == 0 { try await post("/ota/initiate/\(id)", #"{"firmware_version":"7.0.0"}"#) }
                try await get("/commands/\(id)-poll/poll")
                try await get("/config/\(id)-poll")
                try await get("/ota/check/\(id)-poll?version=1.0.0")
            }
            // One id many times (the per-device caps), and the verified device's own reports.
            for index in 0..<count / 5 {
                for id in ["\(prefix)-SAME", "REAL-1"] {
                    try await post("/fault/recovery", #"{"device_id":"\#(id)","timestamp":\#(index),"fault_type":"timeout","success":false}"#)
                    try await post("/power/energy/\(id)", #"{"device_id":"\#(id)","timestamp":\#(index),"power_management":{}}"#)
                    try await post("/config/\(id)/current", #"{"sampling_interval":5,"n":\#(index)}"#)
                }
            }
            return statuses
        }
    }

    /// Size of the SQLite file once the WAL has been copied into it (a passive checkpoint from a second connection;
    /// the WAL itself is reused, so its size says nothing about what is kept).
    static func databaseBytes(_ root: URL) throws -> Int {
        let path = root.appendingPathComponent("data/ecowatt.sqlite").path
        let connection = try DatabaseInspector(path: path)
        for _ in 0..<3 { try connection.checkpointPassively() }
        return (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }

    static func directoryBytes(_ url: URL) -> (files: Int, bytes: Int) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        let bytes = names.reduce(0) { sum, name in
            sum + ((try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(name).path)[.size] as? Int) ?? 0)
        }
        return (names.count, bytes)
    }

    static func residentBytes(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    @Test func floodsOfAnonymousRequestsStayWithinEveryBudgetAndSpareVerifiedDevices() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        try await ProcessTests.prepareFirmware(root: root, version: "7.0.0")
        let port = LoopbackPort.free()
        let server = try await ServerProcess(
            root: root,
            port: port,
            extraArguments: Self.limits.sorted { $0.key < $1.key }.flatMap { ["--limit", "\($0.key)=\($0.value)"] }
        )

        // A verified device with a download in progress.
        #expect(try await server.post("/aggregated/REAL-1", Uploads.body(device: "REAL-1", nonce: 11001)) == 200)
        #expect(try await server.post("/ota/initiate/REAL-1", #"{"firmware_version":"7.0.0"}"#) == 200)
        #expect(try await server.get("/ota/chunk/REAL-1?version=7.0.0&chunk=0") == 200)

        let first = try await Self.flood(port, prefix: "FLOOD-A", count: 250)
        #expect(first[500] == nil, "no server errors: \(first)")
        try await Task.sleep(for: .seconds(2.5))  // last_seen flush, OTA counters
        let databaseAfterFirst = try Self.databaseBytes(root)
        let residentAfterFirst = Self.residentBytes(server.process.processIdentifier)

        let second = try await Self.flood(port, prefix: "FLOOD-B", count: 250)
        #expect(second[500] == nil, "no server errors: \(second)")
        try await Task.sleep(for: .seconds(2.5))
        let databaseAfterSecond = try Self.databaseBytes(root)
        let residentAfterSecond = Self.residentBytes(server.process.processIdentifier)

        // Rows: within every cap, per device and in total.
        let database = try DatabaseInspector(path: root.appendingPathComponent("data/ecowatt.sqlite").path)
        do {
            let pending = try database.int("SELECT COUNT(*) FROM devices WHERE admission = 'pending'")!
            #expect(pending <= 50)
            for (table, total) in [
                ("config_history", 100), ("fault_events", 100), ("power_reports", 100), ("ota_events", 100), ("ota_sessions", 40),
                ("held_messages", 100),
            ] {
                let rows = try database.int("SELECT COUNT(*) FROM \(table)")!
                #expect(rows <= total, "\(table): \(rows) rows")
                let stored = try database.int("SELECT rows FROM retention WHERE name = ?", [.text(table)])
                #expect(stored == rows, "the ledger counts \(table) exactly")
                let perDevice = try database.int("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM \(table) GROUP BY device_id)") ?? 0
                #expect(perDevice <= (table == "ota_events" ? 6 : 5), "\(table): \(perDevice) rows for one device")
            }
            let dropped = try database.int("SELECT SUM(dropped) FROM retention")!
            #expect(dropped > 1000)
            // The verified device and its running session survive every cap.
            #expect(try database.string("SELECT admission FROM devices WHERE device_id = 'REAL-1'") == "verified")
            #expect(try database.int("SELECT COUNT(*) FROM ota_sessions WHERE device_id = 'REAL-1' AND outcome IS NULL") == 1)
            #expect(try database.int("SELECT COUNT(*) FROM fault_events WHERE device_id = 'REAL-1'") == 5)
            // Polls from unknown ids stored nothing.
            #expect(try database.int("SELECT COUNT(*) FROM devices WHERE device_id LIKE '%-poll'") == 0)
        }
        #expect(try await server.get("/ota/chunk/REAL-1?version=7.0.0&chunk=1") == 200, "the download goes on")

        // Disk and memory: the second flood, as large as the first, reuses what the first one freed.
        let diagnostics = Self.directoryBytes(root.appendingPathComponent("diagnostics"))
        print(
            "bounded state: statuses \(first.sorted { $0.key < $1.key }); database \(databaseAfterFirst) → \(databaseAfterSecond) bytes;",
            "RSS \(residentAfterFirst >> 20) → \(residentAfterSecond >> 20) MiB; diagnostics \(diagnostics.files) files, \(diagnostics.bytes) bytes"
        )
        #expect(diagnostics.bytes <= 65_536 + 2048, "diagnostics: \(diagnostics)")
        #expect(
            databaseAfterSecond <= databaseAfterFirst + databaseAfterFirst / 4 + 512 * 1024,
            "\(databaseAfterFirst) → \(databaseAfterSecond) bytes"
        )
        #expect(residentAfterSecond <= residentAfterFirst + 16 << 20, "RSS \(residentAfterFirst) → \(residentAfterSecond) bytes")

        // The counters say what happened.
        let token = try ProcessTests.operatorToken(root)
        let metrics = try await LoopbackHTTP.request(port: port, path: "/metrics", headers: ["Authorization": "Bearer \(token)"])
        #expect(metrics.body.contains("ecowatt_pending_devices_evicted_total "))
        #expect(metrics.body.contains(#"ecowatt_retention_dropped_rows{table="fault_events"}"#))
        #expect(metrics.body.contains("ecowatt_unknown_device_requests_total "))

        // A real device that boots afterwards is tracked: its registration is held until its first upload confirms it,
        // then it has a registry row, a last_seen that follows its polls, and is online.
        #expect(try await server.post("/devices", #"{"device_id":"NEW-REAL","firmware_version":"1.3.4"}"#) == 202)
        #expect(try await server.post("/aggregated/NEW-REAL", Uploads.body(device: "NEW-REAL", nonce: 11001)) == 200)
        try await Task.sleep(for: .seconds(1))
        #expect(try await server.get("/commands/NEW-REAL/poll") == 200)
        try await Task.sleep(for: .seconds(2.5))
        let device = try await LoopbackHTTP.request(port: port, path: "/api/v1/devices/NEW-REAL", headers: ["Authorization": "Bearer \(token)"])
        let fields = try JSONSerialization.jsonObject(with: Data(device.body.utf8)) as? [String: Any]
        let record = fields
        #expect(record?["status"] as? String == "online")
        let lastSeen = try Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse((record?["last_seen"] as? String) ?? "")
        #expect(abs(lastSeen.timeIntervalSinceNow) < 5, "last_seen follows the device's polls")
        #expect(record?["firmware_version"] as? String == "1.3.4", "the held registration took effect")
        try await server.stop(signal: SIGTERM)
    }
}
