import EcoWattProtocol
import EcoWattServer
import EcoWattStorage
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

/// Issue 22: two server instances on one real PostgreSQL, each with its own data directory, side by side or behind a
/// real HAProxy that sends each request to the next instance (no sticky sessions).
@Suite(.enabled(if: PostgresServer.enabled, "needs PostgreSQL (scripts/install-deps.sh postgresql)"))
struct PostgresInstancesTests {
    /// Runs `body` with two live instances on one fresh database and a client for each.
    static func withTwoInstances(
        _ body: @escaping @Sendable (_ servers: [TestServer], _ clients: [any TestClientProtocol]) async throws -> Void
    ) async throws {
        try await PostgresTestDatabase.withURL { url in
            let first = try await TestServer(databaseURL: url)
            let second = try await TestServer(databaseURL: url)
            try await first.run { a in
                try await second.run { b in try await body([first, second], [a, b]) }
            }
        }
    }

    @Test func identicalSignedUploadsSentToBothInstancesAtOnceGetExactlyOne200() async throws {
        try await Self.withTwoInstances { servers, clients in
            for server in servers { server.clock.set(Uploads.exampleArrivalMs) }
            for nonce in UInt32(11_001)...11_010 {
                let body = Uploads.body(device: "TWIN-1", nonce: nonce)
                async let first = clients[0].postJSON("/aggregated/TWIN-1", body)
                async let second = clients[1].postJSON("/aggregated/TWIN-1", body)
                let statuses = try await [first.status.code, second.status.code].sorted()
                #expect(statuses == [200, 401], "nonce \(nonce): one instance accepts, the other refuses a replay")
            }
            let packets = try await servers[0].server.store.packets(deviceID: "TWIN-1", before: nil, limit: 100)
            #expect(packets.count == 10, "each upload stored once")
        }
    }

    @Test func aDevicePollingThroughBothInstancesGetsEachCommandOnce() async throws {
        try await Self.withTwoInstances { servers, clients in
            for (server, client) in zip(servers, clients) { try await server.bind("POLL-2", client: client) }
            var queued: [String] = []
            for value in [100, 200, 300] {
                let response = try await clients[value / 100 % 2].operatorJSON(
                    .post,
                    "/api/v1/devices/POLL-2/commands",
                    #"{"action":"set_power","value":\#(value)}"#,
                    server: servers[value / 100 % 2]
                )
                #expect(response.status == .created, "\(String(buffer: response.body))")
                queued.append(try #require(response.json["command_id"] as? String))
            }
            // Eight polls, four through each instance, all at once.
            let dispatched = try await withThrowingTaskGroup(of: String?.self) { group in
                for i in 0..<8 {
                    group.addTask {
                        let poll = try await clients[i % 2].execute(uri: "/commands/POLL-2/poll", method: .get)
                        return (poll.json["commands"] as? [[String: Any]])?.first?["command_id"] as? String
                    }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(dispatched.sorted() == queued.sorted(), "each command once: \(dispatched)")
        }
    }

    /// A configuration set through one instance is delivered by the other, acknowledged through the first, and both
    /// answer the same running configuration and history.
    @Test func aConfigurationTravelsBetweenInstancesAsOnOne() async throws {
        try await Self.withTwoInstances { servers, clients in
            let (a, b) = (clients[0], clients[1])
            for (server, client) in zip(servers, clients) { try await server.bind("CFG-X", client: client) }
            #expect(try await b.postJSON("/config/CFG-X/current", ConfigHTTPTests.bootReport).status == .ok)
            let update = #"{"config_update":{"sampling_interval":10,"energy_poll_interval":60}}"#
            #expect(try await a.operatorJSON(.put, "/api/v1/devices/CFG-X/config/pending", update, server: servers[0]).status == .ok)
            let poll = try await b.execute(uri: "/config/CFG-X", method: .get)
            #expect(
                String(buffer: poll.body)
                    == #"{"is_pending":true,"pending_config":{"config_update":{"energy_poll_interval":60,"sampling_interval":10}}}"#
            )
            #expect(try await a.postJSON("/config/CFG-X/acknowledge", ConfigHTTPTests.ack).status == .ok)
            #expect(String(buffer: try await b.execute(uri: "/config/CFG-X", method: .get).body) == #"{"is_pending":false}"#)
            for (server, client) in zip(servers, clients) {
                let history = try await client.execute(uri: "/api/v1/devices/CFG-X/config/history", method: .get, headers: server.operatorHeaders)
                #expect(
                    (history.json["items"] as? [[String: Any]])?.map { $0["event"] as? String } == [
                        "applied", "delivered", "requested", "boot_report",
                    ]
                )
                let config = try await client.execute(uri: "/api/v1/devices/CFG-X/config", method: .get, headers: server.operatorHeaders)
                #expect((config.json["running"] as? [String: Any])?["sampling_interval"] as? Int == 10)
            }
        }
    }

    /// A firmware download whose requests alternate between the instances: initiate on one, chunks from both in turn,
    /// progress and the boot report on either. The image verifies, the session ends `success`, and its chunk counters
    /// add up what both served.
    @Test func anOTADownloadWhoseChunksAlternateBetweenInstancesCompletes() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let vector = vectors[1]  // 51 chunks
        try await PostgresTestDatabase.withURL { url in
            // The image is stored once, in PostgreSQL; each instance reads it into its memory on first use.
            let servers = [try await TestServer(firmwareKeys: keys, databaseURL: url), try await TestServer(firmwareKeys: keys, databaseURL: url)]
            try await OTAHTTPTests.install([vector], keys: keys, into: servers[0])
            try await servers[0].run { a in
                try await servers[1].run { b in
                    let clients: [any TestClientProtocol] = [a, b]
                    _ = try await OTAHTTPTests.deploy(vector.version, to: ["ALT-1"], client: a, test: servers[0])
                    var device = OTAHTTPTests.Device(id: "ALT-1", running: "1.0.0", keys: keys)
                    for (server, client) in zip(servers, clients) { try await server.bind(device.id, client: client) }
                    let info = try #require(try await device.checkForUpdate(b))
                    var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
                    try await device.progress(a, "downloading", 0, "Starting firmware download...")
                    #expect(try await device.initiate(b, version: receiver.version).status == .ok)
                    while receiver.nextChunk < receiver.totalChunks {
                        let n = receiver.nextChunk
                        let response = try await clients[n % 2].execute(uri: "/ota/chunk/ALT-1?version=\(receiver.version)&chunk=\(n)", method: .get)
                        try #require(response.status == .ok, "chunk \(n) from instance \(n % 2): \(String(buffer: response.body))")
                        try receiver.receive(reply: try OTAHTTPTests.Device.parse(response))
                        if n % 10 == 0 {
                            let percent = n * 100 / receiver.totalChunks
                            if (n / 10) % 2 == 0 {
                                try await device.progress(a, "downloading", percent, "Downloading")
                            } else {
                                try await device.progress(b, "downloading", percent, "Downloading")
                            }
                        }
                    }
                    let report = try await device.install(a, receiver)
                    #expect(report["outcome"] as? String == "success", "\(report)")
                    var served = 0
                    for _ in 0..<50 where served != receiver.totalChunks {
                        try await Task.sleep(for: .milliseconds(100))
                        let history = try await b.execute(
                            uri: "/api/v1/devices/ALT-1/ota/sessions",
                            method: .get,
                            headers: servers[1].operatorHeaders
                        )
                        served = (history.json["items"] as? [[String: Any]])?.first?["chunks_served"] as? Int ?? 0
                    }
                    #expect(served == receiver.totalChunks, "both instances' chunks counted")
                }
            }
        }
    }

    /// Firmware images and diagnostics live in PostgreSQL: an image uploaded through one instance is listed and served
    /// by the other, and once deleted through that other, the first no longer serves the copy in its memory; an
    /// image left in an instance's `firmware_dir` is imported at start; diagnostics posted to one are read through both.
    @Test func imagesAndDiagnosticsStoredThroughOneInstanceAreServedByTheOther() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let vector = vectors[0]
        try await PostgresTestDatabase.withURL { url in
            // An image prepared into the first instance's firmware directory before it starts (as `ecowatt firmware
            // prepare` does) is imported into the database.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-test-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            try FirmwareDirectory(path: directory.appendingPathComponent("firmware").path)
                .save(FirmwarePreparer.prepare(image: vector.plaintext, version: "0.9.0", keys: keys))
            let servers = [
                try await TestServer(directory: directory, firmwareKeys: keys, databaseURL: url),
                try await TestServer(firmwareKeys: keys, databaseURL: url),
            ]
            try await servers[0].run { a in
                try await servers[1].run { b in
                    let clients: [any TestClientProtocol] = [a, b]
                    func versions(_ i: Int) async throws -> [String] {
                        let list = try await clients[i].execute(uri: "/api/v1/firmwares", method: .get, headers: servers[i].operatorHeaders)
                        return (list.json["items"] as? [[String: Any]] ?? []).compactMap { $0["version"] as? String }
                    }
                    #expect(try await versions(1) == ["0.9.0"], "imported at the first instance's start")
                    var headers = servers[0].operatorHeaders
                    headers[.contentType] = "application/octet-stream"
                    let created = try await a.execute(
                        uri: "/api/v1/firmwares?version=\(vector.version)",
                        method: .post,
                        headers: headers,
                        body: ByteBuffer(bytes: vector.plaintext)
                    )
                    #expect(created.status == .created, "\(String(buffer: created.body))")
                    // b keeps its version list until a's notice arrives (milliseconds).
                    try await MQTTFeedTests.waitUntil(timeout: .seconds(5)) { try await versions(1) == ["0.9.0", vector.version] }
                    // The second instance serves the image a device downloads from it.
                    _ = try await OTAHTTPTests.deploy(vector.version, to: ["IMG-1"], client: b, test: servers[1])
                    var device = OTAHTTPTests.Device(id: "IMG-1", running: "1.0.0", keys: keys)
                    for (server, client) in zip(servers, clients) { try await server.bind(device.id, client: client) }
                    let info = try #require(try await device.checkForUpdate(b))
                    var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
                    #expect(try await device.initiate(b, version: receiver.version).status == .ok)
                    while receiver.nextChunk < receiver.totalChunks {
                        let response = try await a.execute(
                            uri: "/ota/chunk/IMG-1?version=\(receiver.version)&chunk=\(receiver.nextChunk)",
                            method: .get
                        )
                        try #require(response.status == .ok, "\(String(buffer: response.body))")
                        try receiver.receive(reply: try OTAHTTPTests.Device.parse(response))
                    }
                    #expect(throws: Never.self, "the image verifies") { try receiver.verify(publicKey: keys.publicKey) }
                    // Deleted through the second instance (after its deployment is cancelled): the first forgets the
                    // copy it served from memory.
                    let deployments = try await b.execute(uri: "/api/v1/deployments", method: .get, headers: servers[1].operatorHeaders)
                    for item in deployments.json["items"] as? [[String: Any]] ?? [] {
                        let id = try #require(item["id"] as? Int)
                        _ = try await b.execute(uri: "/api/v1/deployments/\(id)/cancel", method: .post, headers: servers[1].operatorHeaders)
                    }
                    let deleted = try await b.execute(
                        uri: "/api/v1/firmwares/\(vector.version)",
                        method: .delete,
                        headers: servers[1].operatorHeaders
                    )
                    #expect(deleted.status == .ok, "\(String(buffer: deleted.body))")
                    // The other instance stops serving the deleted image once the notice arrived.
                    try await MQTTFeedTests.waitUntil(timeout: .seconds(5)) {
                        try await a.execute(uri: "/ota/chunk/IMG-1?version=\(vector.version)&chunk=0", method: .get).status != .ok
                    }
                    #expect(try await versions(0) == ["0.9.0"])
                    // Diagnostics posted to one instance are read through the other.
                    for i in 0..<4 {
                        let posted = try await clients[i % 2].postJSON("/diagnostics/IMG-1", #"{"event":"probe","n":\#(i)}"#)
                        #expect(posted.status == .created, "\(String(buffer: posted.body))")
                    }
                    for (server, client) in zip(servers, clients) {
                        let entries = try await client.execute(
                            uri: "/api/v1/devices/IMG-1/diagnostics?limit=10",
                            method: .get,
                            headers: server.operatorHeaders
                        )
                        let items = entries.json["items"] as? [[String: Any]] ?? []
                        #expect(items.compactMap { $0["n"] as? Int } == [3, 2, 1, 0], "newest first, from both instances")
                    }
                }
            }
        }
    }

    /// A staged rollout with its device traffic split between the instances: the canary installs through one and
    /// proves healthy with uploads to the other, which counts them (it was told the device awaits health); the next
    /// wave opens once, and an operator's pause through one instance holds against the other's evaluator.
    @Test func aRolloutMovesOnEvidenceEitherInstanceSawAndEachDecisionIsTakenOnce() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        try await PostgresTestDatabase.withURL { url in
            let servers = [try await TestServer(firmwareKeys: keys, databaseURL: url), try await TestServer(firmwareKeys: keys, databaseURL: url)]
            try await OTAHTTPTests.install([image], keys: keys, into: servers[0])
            try await servers[0].run { a in
                try await servers[1].run { b in
                    let clients: [any TestClientProtocol] = [a, b]
                    let ids = ["RX-1", "RX-2", "RX-3"]
                    for id in ids {
                        for (server, client) in zip(servers, clients) { try await server.bind(id, client: client) }
                    }
                    let created = try await a.operatorJSON(
                        .post,
                        "/api/v1/rollouts",
                        #"""
                        {"version":"\#(image.version)","device_ids":["RX-1","RX-2","RX-3"],
                         "settings":{"waves":[34,67,100],"min_finished":1,"health_uploads":2,"health_minutes":60}}
                        """#,
                        server: servers[0]
                    )
                    #expect(created.status == .created, "\(String(buffer: created.body))")
                    let id = try #require(created.json["id"] as? Int)
                    let first = try #require(try await RolloutHTTPTests.devices(a, servers[0], id, query: "wave=1").first?["device_id"] as? String)
                    var canary = OTAHTTPTests.Device(id: first, running: "1.0.0", keys: keys)
                    try await RolloutHTTPTests.install(&canary, a, keys: keys)
                    // The second instance hears that the canary awaits health, then counts its uploads.
                    // The install on instance a is announced to instance b.
                    try await MQTTFeedTests.waitUntil(timeout: .seconds(5)) { servers[1].server.services.rollouts.awaitsHealth(first) }
                    for _ in 0..<2 { try await servers[1].bind(first, client: b) }
                    #expect(RolloutHTTPTests.state(try await RolloutHTTPTests.devices(a, servers[0], id), first) == "healthy")
                    // And instance a hears that it no longer waits.
                    try await MQTTFeedTests.waitUntil(timeout: .seconds(5)) { !servers[0].server.services.rollouts.awaitsHealth(first) }
                    // Both evaluators judge the same evidence at once: the wave opens once, one decision audited.
                    async let evaluatedA: Void = servers[0].server.services.rollouts.evaluate()
                    async let evaluatedB: Void = servers[1].server.services.rollouts.evaluate()
                    _ = await (evaluatedA, evaluatedB)
                    #expect(try await RolloutHTTPTests.rollout(b, servers[1], id)["current_wave"] as? Int == 2)
                    let audit = try await a.execute(uri: "/api/v1/audit?limit=50", method: .get, headers: servers[0].operatorHeaders)
                    let advanced = (audit.json["items"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == "rolloutAdvanced" }
                    #expect(advanced.count == 1, "one decision, not one per instance: \(advanced)")
                    // A pause through b holds: a's evaluator, with wave 2's device healthy, does not advance over it.
                    let paused = try await b.operatorJSON(.post, "/api/v1/rollouts/\(id)/pause", nil, server: servers[1])
                    #expect(paused.json["status"] as? String == "paused")
                    await servers[0].server.services.rollouts.evaluate()
                    let after = try await RolloutHTTPTests.rollout(a, servers[0], id)
                    #expect(after["status"] as? String == "paused" && after["current_wave"] as? Int == 2, "\(after)")
                }
            }
        }
    }

    /// The whole uploads corpus through HAProxy, every request to the next instance: a device's 0x71 stream alternates
    /// between two instances whose cached decoder state the other keeps changing. What is stored must be what one
    /// SQLite server stores from the same replay (which ``ConformanceHTTPTests`` checks against the corpus).
    @Test(.enabled(if: HAProxy.isInstalled, "needs haproxy"))
    func theConformanceCorpusThroughABalancerIsStoredExactlyAsOnOneServer() async throws {
        let reference = try await TestServer()
        try await reference.run { client in
            for line in try Conformance.lines("uploads.jsonl") {
                try await Self.replay(line, clocks: [reference.clock]) { Int(try await client.postJSON($0, $1).status.code) }
            }
        }
        try await Self.withTwoInstances { servers, clients in
            let lines = try Conformance.lines("uploads.jsonl")
            let proxy = try HAProxy(backendPorts: clients.map { $0.port! })
            defer { proxy.stop() }
            for line in lines {
                try await Self.replay(line, clocks: servers.map(\.clock)) { path, body in
                    try await LoopbackHTTP.request(port: proxy.port, method: "POST", path: path, body: body).status
                }
            }
            let devices = Set(lines.map { $0["device_id"] as! String })
            for device in devices.sorted() {
                let want = try await reference.server.store.samples(deviceID: device, fromMs: .min, toMs: .max, limit: 100_000)
                let got = try await servers[1].server.store.samples(deviceID: device, fromMs: .min, toMs: .max, limit: 100_000)
                #expect(got.count == want.count, "\(device): samples")
                #expect(got.map(\.timestampMs) == want.map(\.timestampMs), "\(device): sample times")
                #expect(got.map(\.rawValues) == want.map(\.rawValues), "\(device): values")
                let wantPackets = try await reference.server.store.packets(deviceID: device, before: nil, limit: 10_000)
                let gotPackets = try await servers[0].server.store.packets(deviceID: device, before: nil, limit: 10_000)
                #expect(gotPackets.map(\.decoded) == wantPackets.map(\.decoded), "\(device): decoded packets")
                #expect(gotPackets.map(\.nonce) == wantPackets.map(\.nonce), "\(device): packets")
            }
        }
    }

    /// Sends one corpus line (its boot report first, if any) at the corpus's times; checks the upload's status.
    static func replay(_ line: [String: Any], clocks: [TestClock], post: (String, String) async throws -> Int) async throws {
        if line["boot"] as? Bool == true, let report = line["boot_report"] as? [String: Any] {
            let body = report["body"] as! String
            let sentAt = (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["timestamp"] as? Int64
            for clock in clocks { clock.set((sentAt ?? 0) * 1000) }
            _ = try await post(report["path"] as! String, body)
        }
        for clock in clocks { clock.set(Int64(((line["sent_at"] as! Double) * 1000).rounded())) }
        let status = try await post(line["path"] as! String, line["body"] as! String)
        let expected = (line["expected"] as! [String: Any])["http_status"] as! Int
        #expect(status == expected, "\(line["device_id"]!) seq \(line["seq"]!): status")
    }
}
