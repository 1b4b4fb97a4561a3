import Crypto
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import EcoWattTestSupport
import Foundation
import Synchronization
import Testing

/// Tests that run the real `ecowatt` binary: crash durability, graceful shutdown, `ecowatt decode`.
@Suite(.serialized) struct ProcessTests {
    static func temporaryRoot() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("ecowatt-proc-\(UUID().uuidString)")
    }

    /// Generates FOTA keys under `root/keys` and prepares a small image of `version` into `root/firmware`.
    static func prepareFirmware(root: URL, version: String) async throws {
        let keysDir = root.appendingPathComponent("keys").path
        _ = try await ServerProcess.runCLI(["keys", "generate", "--keys-dir", keysDir])
        let image = root.appendingPathComponent("app.bin")
        try Data([0xE9] + (1..<20_000).map { UInt8(truncatingIfNeeded: $0) }).write(to: image)
        let (prepared, _, error) = try await ServerProcess.runCLI([
            "firmware", "prepare", image.path, "--version", version, "--keys-dir", keysDir, "--firmware-dir",
            root.appendingPathComponent("firmware").path,
        ])
        #expect(prepared == 0, "\(error)")
    }

    /// The operator token a server started on `root` generated.
    static func operatorToken(_ root: URL) throws -> String {
        try String(contentsOf: root.appendingPathComponent("keys/operator_token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Uploads from several devices run while the server is SIGKILLed; after a restart on the same data directory,
    /// every upload that got a 200 is stored and every device's nonce state is intact.
    @Test func acknowledgedUploadsAndNoncesSurviveSIGKILL() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let first = try await ServerProcess(root: root, port: port)
        let acknowledged = Acknowledged()
        let devices = (0..<8).map { "KILL-\($0)" }
        let senders = Task {
            await withTaskGroup(of: Void.self) { group in
                for device in devices {
                    group.addTask {
                        var nonce: UInt32 = 11001
                        while !Task.isCancelled {
                            guard let status = try? await first.post("/aggregated/\(device)", Uploads.body(device: device, nonce: nonce))
                            else { return }  // the server is gone
                            if status == 200 { acknowledged.add(device, nonce) }
                            nonce += 1
                        }
                    }
                }
            }
        }
        // Let a good number of uploads through, then kill the server in the middle of the traffic.
        while acknowledged.total < 200 {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await first.stop(signal: SIGKILL)
        await senders.value
        let acked = acknowledged.snapshot

        let second = try await ServerProcess(root: root, port: port)
        let database = try DatabaseInspector(path: root.appendingPathComponent("data/ecowatt.sqlite").path)
        for device in devices {
            let nonces = try #require(acked[device], "every device got uploads through")
            let stored = try database.packets(deviceID: device)
            for nonce in nonces {
                let samples = stored.filter { $0.packet.nonce == nonce }.map { $0.packet.samples?.count ?? 0 }.reduce(0, +)
                #expect(samples == 3, "\(device) nonce \(nonce) was acknowledged")
            }
            // The last acknowledged nonce is remembered: resending it is a replay.
            let last = nonces.max()!
            #expect(try await second.post("/aggregated/\(device)", Uploads.body(device: device, nonce: last)) == 401)
        }
        #expect(try await second.stop(signal: SIGTERM) == 0)
    }

    /// SIGTERM: the server answers the requests it has, closes the database and exits 0.
    @Test func sigtermShutsDownGracefully() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let server = try await ServerProcess(root: root, port: LoopbackPort.free())
        #expect(try await server.post("/aggregated/TERM-1", Uploads.body(device: "TERM-1", nonce: 5)) == 200)
        let status = try await server.stop(signal: SIGTERM)
        #expect(status == 0)
        #expect(server.log.contains("database closed"))
        #expect(!server.log.contains("CancellationError"), "a periodic job stopped by the shutdown has nothing to warn about")
        // A clean close leaves no WAL behind.
        let wal = root.appendingPathComponent("data/ecowatt.sqlite-wal").path
        #expect((try? FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int) ?? 0 == 0)
        let token = root.appendingPathComponent("keys/operator_token").path
        let permissions = try FileManager.default.attributesOfItem(atPath: token)[.posixPermissions] as? Int
        #expect(permissions == 0o600)
    }

    /// `ecowatt device set-key` writes a per-device key that a running server picks up.
    @Test func deviceSetKeyReachesARunningServer() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let server = try await ServerProcess(root: root, port: LoopbackPort.free())
        let keyHex = String(repeating: "ab", count: 32)
        let dataDir = root.appendingPathComponent("data").path
        let (status, _, stderr) = try await ServerProcess.runCLI(["device", "set-key", "OWN-KEY", keyHex, "--data-dir", dataDir])
        #expect(status == 0, "\(stderr)")
        let ownKey = SymmetricKey(data: HexCoding.decode(keyHex)!)
        // Within the reload interval the server switches from the fleet key to the device's own key.
        var accepted = false
        for attempt in 0..<40 where !accepted {
            let nonce = UInt32(100 + attempt)
            accepted = try await server.post("/aggregated/OWN-KEY", Uploads.body(device: "OWN-KEY", nonce: nonce, key: ownKey)) == 200
            if !accepted { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(accepted)
        #expect(try await server.post("/aggregated/OWN-KEY", Uploads.body(device: "OWN-KEY", nonce: 500)) == 401)
        let (badStatus, _, badError) = try await ServerProcess.runCLI(["device", "set-key", "OWN-KEY", "xyz", "--data-dir", dataDir])
        #expect(badStatus != 0)
        #expect(badError.contains("hex"))
        try await server.stop(signal: SIGTERM)
    }

    /// `ecowatt command queue|list|status|cancel` against a running server.
    @Test func commandCLIQueuesListsAndCancels() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port)
        let common = ["--url", "http://127.0.0.1:\(port)", "--token-file", root.appendingPathComponent("keys/operator_token").path]
        let (queued, id, queueError) = try await ServerProcess.runCLI(
            ["command", "queue", "CLI-1", "set_power", "--value", "5000", "--create"] + common
        )
        #expect(queued == 0, "\(queueError)")
        let commandID = id.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(commandID.count == 36)
        let (_, list, _) = try await ServerProcess.runCLI(["command", "list", "CLI-1"] + common)
        #expect(list.contains(commandID) && list.contains("pending"))
        let (_, status, _) = try await ServerProcess.runCLI(["command", "status", commandID] + common)
        #expect(status.contains(#""value":5000"#))
        let (cancelled, cancelOutput, _) = try await ServerProcess.runCLI(["command", "cancel", commandID] + common)
        #expect(cancelled == 0)
        #expect(cancelOutput.contains("cancelled"))
        let (refused, _, reason) = try await ServerProcess.runCLI(["command", "queue", "CLI-1", "reboot"] + common)
        #expect(refused != 0)
        #expect(reason.contains("unknown action"))
        let (unauthorized, _, tokenReason) = try await ServerProcess.runCLI(
            ["command", "list", "CLI-1", "--url", "http://127.0.0.1:\(port)"],
            environment: ["ECOWATT_TOKEN": "wrong-token-wrong-token"]
        )
        #expect(unauthorized != 0)
        #expect(tokenReason.contains("401"))
        try await server.stop(signal: SIGTERM)
    }

    /// `ecowatt diagnostics export` writes a device's entries oldest first as JSON Lines; `summary` lists who sent them.
    @Test func diagnosticsCLIExportsADevicesEntriesOldestFirstAsJSONLines() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port)
        let common = ["--url", "http://127.0.0.1:\(port)", "--token-file", root.appendingPathComponent("keys/operator_token").path]
        for n in 0..<3 { #expect(try await server.post("/diagnostics/DX-1", #"{"event":"probe","n":\#(n)}"#) == 201) }
        let (status, output, error) = try await ServerProcess.runCLI(["diagnostics", "export", "DX-1"] + common)
        #expect(status == 0 && error.contains("exported 3 entries"), "\(error)")
        let lines = output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.compactMap { $0["n"] as? Int } == [0, 1, 2], "oldest first: \(output)")
        #expect(lines.allSatisfy { $0["device_id"] as? String == "DX-1" && $0["received_at"] is String })
        let (_, summary, _) = try await ServerProcess.runCLI(["diagnostics", "summary"] + common)
        #expect(summary.contains("DX-1") && summary.contains("1 devices"), "\(summary)")
        let (unknown, _, reason) = try await ServerProcess.runCLI(["diagnostics", "export", "../x"] + common)
        #expect(unknown != 0 && !reason.isEmpty)
        try await server.stop(signal: SIGTERM)
    }

    /// The operator CLI over `/api/v1`: devices, configuration, deployments and statistics, table and JSON output,
    /// paging, and one-line errors without the usage text.
    @Test func operatorCLIManagesDevicesConfigurationAndDeployments() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port)
        let common = ["--url", "http://127.0.0.1:\(port)", "--token-file", root.appendingPathComponent("keys/operator_token").path]
        for id in ["CLI-A", "CLI-B", "CLI-C"] {
            let (created, _, error) = try await ServerProcess.runCLI(["device", "create", id, "--name", "n-\(id)"] + common)
            #expect(created == 0, "\(error)")
        }
        let (_, table, _) = try await ServerProcess.runCLI(["device", "list"] + common)
        #expect(table.split(separator: "\n").first?.hasPrefix("DEVICE") == true && table.contains("n-CLI-B"))
        let (_, page, more) = try await ServerProcess.runCLI(["device", "list", "--limit", "2", "--output", "json"] + common)
        let firstPage = try #require(try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [[String: Any]])
        #expect(firstPage.map { $0["device_id"] as? String } == ["CLI-A", "CLI-B"])
        let cursor = try #require(more.split(separator: " ").last.map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) })
        let (_, rest, _) = try await ServerProcess.runCLI(["device", "list", "--cursor", cursor, "--output", "json"] + common)
        #expect(rest.contains("CLI-C") && !rest.contains("CLI-A"))
        let (_, all, _) = try await ServerProcess.runCLI(["device", "list", "--limit", "1", "--all", "--output", "json"] + common)
        #expect(((try JSONSerialization.jsonObject(with: Data(all.utf8))) as? [Any])?.count == 3)

        let (set, change, setError) = try await ServerProcess.runCLI(["config", "set", "CLI-A", #"{"sampling_interval":10}"#] + common)
        #expect(set == 0 && change.contains(#""accepted":{"sampling_interval":10}"#), "\(setError)")
        #expect(try await ServerProcess.runCLI(["config", "withdraw", "CLI-A"] + common).0 == 0)
        let (_, history, _) = try await ServerProcess.runCLI(["config", "history", "CLI-A"] + common)
        #expect(history.contains("withdrawn") && history.contains("requested"))
        let (again, _, nothing) = try await ServerProcess.runCLI(["config", "withdraw", "CLI-A"] + common)
        #expect(again == 1)
        #expect(
            nothing.contains("server answered 404: No pending configuration for CLI-A (http://127.0.0.1:\(port)/api/v1/devices/CLI-A/config/pending)")
        )
        #expect(!nothing.contains("USAGE"), "no usage text for a refused request")

        let (unknown, _, unknownError) = try await ServerProcess.runCLI(["command", "queue", "NOPE", "get_power_stats"] + common)
        #expect(unknown == 1 && unknownError.contains("Unknown device NOPE") && !unknownError.contains("USAGE"))
        let (usage, _, usageError) = try await ServerProcess.runCLI(["device", "list", "--status", "asleep"] + common)
        #expect(usage != 0 && usageError.contains("status is online, offline or updating"))
        let (_, deployments, _) = try await ServerProcess.runCLI(["deployment", "list"] + common)
        #expect(deployments.hasPrefix("ID"))
        let (cancelled, _, cancelError) = try await ServerProcess.runCLI(["deployment", "cancel", "42"] + common)
        #expect(cancelled == 1 && cancelError.contains("404"))
        let (stats, statsOutput, _) = try await ServerProcess.runCLI(["stats", "--output", "json"] + common)
        #expect(stats == 0 && statsOutput.contains(#""commands":"#))
        try await server.stop(signal: SIGTERM)
    }

    /// `ecowatt keys generate`, `firmware prepare` (picked up by a running server), `firmware deploy` and `status`.
    @Test func keysAndFirmwareCLIPrepareWhatARunningServerServes() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let keysDir = root.appendingPathComponent("keys").path
        let firmwareDir = root.appendingPathComponent("firmware").path
        let (generated, written, generateError) = try await ServerProcess.runCLI(["keys", "generate", "--keys-dir", keysDir])
        #expect(generated == 0, "\(generateError)")
        #expect(written.contains("server_private_key.pem") && written.contains("include/application/keys.h"))
        #expect(written.contains("src/application/keys.cpp"))
        // The fleet key: a private key for the server and its definition for the firmware's security.cpp.
        let (fleet, fleetOutput, fleetError) = try await ServerProcess.runCLI(["keys", "fleet-key", "--keys-dir", keysDir])
        #expect(fleet == 0, "\(fleetError)")
        #expect(fleetOutput.contains("ECOWATT_FLEET_KEY"))
        let fleetHex = try String(contentsOfFile: keysDir + "/fleet_key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(HexCoding.decode(fleetHex)?.count == 32 && fleetHex != FleetKey.firmwareDefaultHex)
        let definition = try String(contentsOfFile: keysDir + "/firmware/security_PSK_HMAC.txt", encoding: .utf8)
        #expect(definition.contains("const uint8_t SecurityLayer::PSK_HMAC[32] = {"))
        #expect(definition.contains("0x" + fleetHex.prefix(2)))
        let (fleetAgain, _, againError) = try await ServerProcess.runCLI(["keys", "fleet-key", "--keys-dir", keysDir])
        #expect(fleetAgain != 0 && againError.contains("--force"))
        let privateKeyPath = (keysDir as NSString).appendingPathComponent("server_private_key.pem")
        let original = try #require(FileManager.default.contents(atPath: privateKeyPath))
        #expect(try FileManager.default.attributesOfItem(atPath: privateKeyPath)[.posixPermissions] as? Int == 0o600)
        let (refused, _, refusal) = try await ServerProcess.runCLI(["keys", "generate", "--keys-dir", keysDir])
        #expect(refused != 0 && refusal.contains("--force"))
        #expect(FileManager.default.contents(atPath: privateKeyPath) == original)

        let image = root.appendingPathComponent("app.bin")
        try Data([0xE9] + (1..<400_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }).write(to: image)
        let prepare = [
            "firmware", "prepare", image.path, "--version", "3.1.0", "--notes", "CLI test", "--keys-dir", keysDir, "--firmware-dir", firmwareDir,
        ]
        let (prepared, summary, progress) = try await ServerProcess.runCLI(prepare)
        #expect(prepared == 0, "\(progress)")
        #expect(summary.contains("196 chunks"), "\(summary)")
        #expect(progress.contains("encrypting [") && progress.contains("100%"), "a progress bar for a 400 KB image")
        let (again, _, exists) = try await ServerProcess.runCLI(prepare)
        #expect(again != 0 && exists.contains("already exists"))
        let (badVersion, _, _) = try await ServerProcess.runCLI(["firmware", "prepare", image.path, "--version", "../1", "--keys-dir", keysDir])
        #expect(badVersion != 0)

        // The server started afterwards loads these keys (no new ones) and serves the prepared version.
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port)
        #expect(FileManager.default.contents(atPath: privateKeyPath) == original)
        let common = ["--url", "http://127.0.0.1:\(port)", "--token-file", root.appendingPathComponent("keys/operator_token").path]
        let (deployed, deployment, deployError) = try await ServerProcess.runCLI(
            ["firmware", "deploy", "3.1.0", "--device", "CLI-OTA", "--create"] + common
        )
        #expect(deployed == 0, "\(deployError)")
        #expect(deployment.contains(#""version":"3.1.0""#))
        let (_, status, _) = try await ServerProcess.runCLI(["firmware", "status", "CLI-OTA"] + common)
        #expect(status.contains("no OTA session"))
        #expect(try await server.get("/ota/check/CLI-OTA?version=3.0.0") == 200)
        try await server.stop(signal: SIGTERM)
    }

    /// The MQTT outbox survives SIGKILL: uploads acknowledged while the broker was down are delivered by the next
    /// process once a broker is there.
    @Test(.enabled(if: MosquittoBroker.isInstalled)) func mqttBacklogSurvivesSIGKILL() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let brokerPort = LoopbackPort.free()
        let config = root.appendingPathComponent("ecowatt.json")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try #"{"mqtt_port":\#(brokerPort),"mqtt_client_id":"sigkill-\#(brokerPort)"}"#.write(to: config, atomically: true, encoding: .utf8)
        let first = try await ServerProcess(root: root, port: LoopbackPort.free(), extraArguments: ["--config", config.path])
        for index in 0..<50 {
            let status = try await first.post("/aggregated/KILL-\(index)", Uploads.body(device: "KILL-\(index)", nonce: 1))
            #expect(status == 200)
        }
        _ = try await first.stop(signal: SIGKILL)

        let broker = try MosquittoBroker(port: brokerPort)
        let subscriber = try MQTTSubscriber(port: broker.port, topic: "ecowatt/data/#")
        try await subscriber.waitUntilSubscribed()
        let second = try await ServerProcess(root: root, port: LoopbackPort.free(), extraArguments: ["--config", config.path])
        let messages = try await subscriber.wait(for: 50, timeout: .seconds(30))
        let devices = Set(messages.compactMap { (try? JSONParser.parse($0.payload))?["device_id"]?.stringValue })
        #expect(devices == Set((0..<50).map { "KILL-\($0)" }), "\(second.log)")
        subscriber.stop()
        try await second.stop(signal: SIGTERM)
    }

    /// A second server on a port in use exits non-zero with the reason (it used to hang, cancelled services waiting on
    /// the writer).
    @Test func aPortInUseEndsTheProcessWithTheError() async throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let first = try await ServerProcess(root: root.appendingPathComponent("a"), port: port)
        let other = root.appendingPathComponent("b")
        let (status, _, stderr) = try await ServerProcess.runCLI(
            [
                "serve", "--host", "127.0.0.1", "--port", "\(port)", "--data-dir", other.appendingPathComponent("data").path,
                "--keys-dir", other.appendingPathComponent("keys").path, "--firmware-dir", other.appendingPathComponent("fw").path,
                "--diagnostics-dir", other.appendingPathComponent("diag").path,
            ],
            timeout: .seconds(20)
        )
        #expect(status == 1, "the process must end by itself, with status 1 (\(status))")
        #expect(stderr.contains("cannot listen on 127.0.0.1:\(port)") && stderr.contains("Address already in use"), "\(stderr)")
        try await first.stop(signal: SIGTERM)
    }

    /// `ecowatt decode` reproduces every decodable packet of the uploads corpus; what it decodes beyond them (0x71
    /// packets whose predecessors came late, the whole samples of cut 0xD0 blobs) is what the device read.
    @Test func decodeCommandReproducesTheCorpus() async throws {
        let input = Conformance.directory.appendingPathComponent("uploads.jsonl").path
        let (status, stdout, stderr) = try await ServerProcess.runCLI(["decode", "--input", input])
        #expect(status == 0, "\(stderr)")
        var expected = [String: [[Int]]]()
        var truth = [String: [[Int]]]()
        for line in try Conformance.lines("uploads.jsonl") {
            let packets = (line["expected"] as! [String: Any])["packets"] as! [[String: Any]]
            for (index, packet) in packets.enumerated() {
                let key = "\(line["device_id"]!)/\(line["seq"]!)/\(index)"
                if packet["decodable"] as! Bool {
                    expected[key] = packet["values"] as? [[Int]]
                } else {
                    truth[key] = packet["true_values"] as? [[Int]]
                }
            }
        }
        var seen = 0
        var beyond = 0
        for line in stdout.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let key = "\(object["device_id"]!)/\(object["seq"]!)/\(object["packet_index"]!)"
            let values = try #require(object["values"] as? [[Int]])
            if let want = expected[key] {
                #expect(values == want, "\(key)")
                seen += 1
            } else {
                #expect(!values.isEmpty && truth[key].map { Array($0.prefix(values.count)) } == values, "\(key) beyond the corpus")
                beyond += 1
            }
        }
        #expect(seen == expected.count)
        #expect(beyond == 5, "the same packets as the server decodes beyond the corpus")
        #expect(stderr.contains("undecodable"))
    }
}

/// Nonces acknowledged with 200, per device.
final class Acknowledged: Sendable {
    private let state = Mutex<[String: [UInt32]]>([:])
    func add(_ device: String, _ nonce: UInt32) { state.withLock { $0[device, default: []].append(nonce) } }
    var total: Int { state.withLock { $0.values.reduce(0) { $0 + $1.count } } }
    var snapshot: [String: [UInt32]] { state.withLock { $0 } }
}
