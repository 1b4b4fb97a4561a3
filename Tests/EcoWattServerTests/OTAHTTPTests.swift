import EcoWattProtocol
import EcoWattServer
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

/// The FOTA flow over HTTP against a live server, with a device emulator that applies the firmware's checks
/// (spec §7.1–§7.6).
@Suite struct OTAHTTPTests {
    @Test func emulatedDevicesDownloadAndVerifyBothVectorImages() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await Self.install(vectors, keys: keys, into: test)
        try await test.run { client in
            for (index, vector) in vectors.enumerated() {
                let deviceID = "OTA-\(index)"
                // The stored manifest is served as stored (the same JSON object) and carries every field of the vector.
                let manifest = try await client.execute(
                    uri: "/api/v1/firmwares/\(vector.version)/manifest",
                    method: .get,
                    headers: test.operatorHeaders
                )
                let path = FirmwareDirectory(path: test.server.configuration.ota.firmwareDirectory).manifestPath(vector.version)
                let stored = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: path)!) as? NSDictionary
                #expect(try JSONSerialization.jsonObject(with: Data(manifest.body.readableBytesView)) as? NSDictionary == stored)
                let served = Self.members(try JSONParser.parse(Array(manifest.body.readableBytesView)))
                for (key, value) in Self.members(vector.manifest) { #expect(served[key] == value, "manifest \(key)") }

                var device = Device(id: deviceID, running: "1.0.0", keys: keys)
                try await test.bind(device.id, client: client)  // a running device uploads
                #expect(
                    try await client.postJSON("/devices", #"{"device_id":"\#(deviceID)","firmware_version":"1.0.0"}"#).status == .created
                )
                #expect(try await device.checkForUpdate(client) == nil, "nothing is offered before a deployment")
                _ = try await Self.deploy(vector.version, to: [deviceID], client: client, test: test)
                let info = try #require(try await device.checkForUpdate(client))
                #expect(Self.members(info) == Self.members(vector.updateInfo), "update_info of \(vector.version)")

                let (receiver, bodies) = try await device.update(client)
                #expect(receiver.plaintext == vector.plaintext)
                for (body, expected) in zip(bodies, vector.chunkResponses) {
                    #expect(Self.members(try JSONParser.parse(Array(body.utf8))) == Self.members(expected))
                    #expect(!body.contains("\\n") && !body.contains(" "))
                }
                #expect(bodies.count == vector.chunkResponses.count)
                // Running the deployed version now: never offered again.
                #expect(try await device.checkForUpdate(client) == nil)
                // The boot report is idempotent.
                #expect(try await device.boot(client)["outcome"] is NSNull)
                device.checkPools()

                let status = try await client.execute(uri: "/api/v1/devices/\(deviceID)/ota", method: .get, headers: test.operatorHeaders)
                let session = try #require(status.json["session"] as? [String: Any])
                #expect(session["outcome"] as? String == "success")
                #expect(session["chunks_served"] as? Int == vector.chunkResponses.count)
                #expect(session["phase"] as? String == "installing")
                let phases = (status.json["events"] as? [[String: Any]] ?? []).compactMap { $0["phase"] as? String }
                #expect(
                    phases.first == "downloading" && phases.suffix(4) == ["download_complete", "verifying", "verification_success", "installing"]
                )
                // The registry shows the version the device now runs.
                let registry = try await client.execute(uri: "/api/v1/devices/\(deviceID)", method: .get, headers: test.operatorHeaders)
                #expect(registry.json["firmware_version"] as? String == vector.version)
            }
            let stats = try await client.execute(uri: "/api/v1/stats/ota", method: .get, headers: test.operatorHeaders)
            #expect((stats.json["sessions_by_outcome"] as? [String: Any])?["success"] as? Int == 2)
            #expect(stats.json["chunks_served"] as? Int == vectors.reduce(0) { $0 + $1.chunkResponses.count })
        }
    }

    @Test func downloadSurvivesAServerRestartMidway() async throws {
        let (keys, vectors) = try Self.vectors()
        let vector = vectors[1]  // 51 chunks
        let first = try await TestServer(firmwareKeys: keys)
        try await Self.install([vector], keys: keys, into: first)
        let state = Mutex<(Device, DeviceFirmwareReceiver)?>(nil)
        try await first.run { client in
            _ = try await Self.deploy(vector.version, to: nil, client: client, test: first)
            var device = Device(id: "RESTART-1", running: "1.0.0", keys: keys)
            try await first.bind(device.id, client: client)  // a running device uploads
            let info = try #require(try await device.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            _ = try await device.fetch(client, &receiver, until: 20)
            state.withLock { $0 = (device, receiver) }
        }
        // Same directories, new process state: the session and its counters come back from SQLite.
        let second = try await TestServer(directory: first.directory, firmwareKeys: keys)
        try await second.run { client in
            var (device, receiver) = try #require(state.withLock { $0 })
            let status = try await client.execute(uri: "/api/v1/devices/RESTART-1/ota", method: .get, headers: second.operatorHeaders)
            #expect(status.json["active"] as? Bool == true)
            #expect((status.json["session"] as? [String: Any])?["chunks_served"] as? Int == 20)
            _ = try await device.fetch(client, &receiver)
            let report = try await device.install(client, receiver)
            #expect(report["outcome"] as? String == "success")
            let history = try await client.execute(uri: "/api/v1/devices/RESTART-1/ota/sessions", method: .get, headers: second.operatorHeaders)
            let sessions = try #require(history.json["items"] as? [[String: Any]])
            #expect(sessions.count == 1)
            #expect(sessions.first?["chunks_served"] as? Int == receiver.totalChunks)
        }
    }

    @Test func aFailedAttemptNeverBlocksTheNextInitiate() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await Self.install(vectors, keys: keys, into: test)
        try await test.run { client in
            _ = try await Self.deploy(vectors[0].version, to: ["RETRY-1"], client: client, test: test)
            var device = Device(id: "RETRY-1", running: "1.0.0", keys: keys)
            try await test.bind(device.id, client: client)  // a running device uploads
            let info = try #require(try await device.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            let firstInitiate = try await device.initiate(client, version: receiver.version)
            #expect(firstInitiate.status == .ok)
            _ = try await device.fetch(client, &receiver, until: 1)
            // A chunk failure: the device reports it and retries a full period later with a new initiate.
            try await device.progress(client, "failed", 33, "Download failed - will retry on next cycle")
            let afterFailure = try await client.execute(uri: "/ota/chunk/RETRY-1?version=\(receiver.version)&chunk=1", method: .get)
            #expect(afterFailure.status == .conflict)
            // An initiate while a session is still open replaces it too.
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            let (_, bodies) = try await device.update(client)
            #expect(bodies.count == receiver.totalChunks)

            let history = try await client.execute(uri: "/api/v1/devices/RETRY-1/ota/sessions", method: .get, headers: test.operatorHeaders)
            let outcomes = (history.json["items"] as? [[String: Any]] ?? []).map { $0["outcome"] as? String ?? "active" }
            #expect(outcomes == ["success", "replaced", "failed"])
        }
    }

    /// Issue 15: a download the device abandons without a report (the corpus's corrupted chunk) ends as failed when
    /// its next attempt starts; the new attempt's "Starting" event belongs to the new session.
    @Test func aDownloadAbandonedWithoutAReportEndsAsFailedWhenTheNextAttemptStarts() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await Self.install(vectors, keys: keys, into: test)
        try await test.run { client in
            _ = try await Self.deploy(vectors[1].version, to: ["ABANDON-1"], client: client, test: test)
            var device = Device(id: "ABANDON-1", running: "1.0.0", keys: keys)
            try await test.bind(device.id, client: client)
            let info = try #require(try await device.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            try await device.progress(client, "downloading", 0, "Starting firmware download...")
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            _ = try await device.fetch(client, &receiver, until: 20)  // then a chunk fails to decrypt: no report
            let (_, bodies) = try await device.update(client)  // a full OTA period later, from the start
            #expect(bodies.count == receiver.totalChunks)
            let history = try await client.execute(uri: "/api/v1/devices/ABANDON-1/ota/sessions", method: .get, headers: test.operatorHeaders)
            let sessions = try #require(history.json["items"] as? [[String: Any]])
            #expect(sessions.map { $0["outcome"] as? String ?? "active" } == ["success", "failed"])
            #expect((sessions[1]["message"] as? String)?.hasPrefix("abandoned") == true)
            #expect(sessions[1]["chunks_served"] as? Int == 20, "its progress is not reset by the next attempt")
        }
    }

    /// Initiates of one device at once (a retry racing its original, or a forger on the device's network): the
    /// session that chunks are counted against is the one stored as active, never one the store already replaced.
    @Test func initiatesOfOneDeviceAtOnceLeaveTheServedSessionTheStoredOne() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await Self.install(vectors, keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            let version = vectors[0].version
            _ = try await Self.deploy(version, to: ["BURST-1"], client: client, test: test)
            try await test.bind("BURST-1", client: client)
            for round in 1...6 {
                let statuses = await withTaskGroup(of: Int.self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            let body = #"{"firmware_version":"\#(version)"}"#
                            // 30 s: the one initiate that runs stores a session, slow beside a busy test run (at 5 s it
                            // once timed out, leaving only the 409s of the others).
                            let response = try? await LoopbackHTTP.request(
                                port: port,
                                method: "POST",
                                path: "/ota/initiate/BURST-1",
                                body: body,
                                timeoutSeconds: 30
                            )
                            return response?.status ?? 0
                        }
                    }
                    return await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.contains(200) && statuses.allSatisfy { $0 == 200 || $0 == 409 }, "\(statuses)")
                let chunk = try await client.execute(uri: "/ota/chunk/BURST-1?version=\(version)&chunk=0", method: .get)
                #expect(chunk.status == .ok)
                let history = try await client.execute(uri: "/api/v1/devices/BURST-1/ota/sessions", method: .get, headers: test.operatorHeaders)
                let active = (history.json["items"] as? [[String: Any]] ?? []).filter { $0["outcome"] == nil }
                #expect(active.count == 1 && active.first?["chunks_served"] as? Int == 1, "round \(round): \(active)")
            }
        }
    }

    @Test func offersRespectRunningVersionsMismatchesAndAttemptLimits() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await Self.install(vectors, keys: keys, into: test)
        let version = vectors[0].version
        try await test.run { client in
            _ = try await Self.deploy(version, to: nil, client: client, test: test, maxAttempts: 2)
            // Already running the deployed version.
            var current = Device(id: "CURRENT", running: version, keys: keys)
            try await test.bind(current.id, client: client)  // a running device uploads
            #expect(try await current.checkForUpdate(client) == nil)

            // An image whose compiled-in version differs: after installing, the device reports its old string.
            var mismatch = Device(id: "MISMATCH", running: "1.0.0", keys: keys)
            try await test.bind(mismatch.id, client: client)  // a running device uploads
            let info = try #require(try await mismatch.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            #expect(try await mismatch.initiate(client, version: version).status == .ok)
            _ = try await mismatch.fetch(client, &receiver)
            try receiver.verify(publicKey: keys.publicKey)
            try await mismatch.progress(client, "installing", 100, "Installing new firmware - Device will reboot")
            #expect(try await mismatch.boot(client)["outcome"] as? String == "version_mismatch")
            #expect(try await mismatch.checkForUpdate(client) == nil, "no update loop")

            // A reboot mid-download is one failed attempt of max_attempts = 2 (offered again); a rollback fails the
            // device in the deployment at once (a one-wave rollout: the image does not run on it).
            var flaky = Device(id: "FLAKY", running: "1.0.0", keys: keys)
            try await test.bind(flaky.id, client: client)  // a running device uploads
            #expect(try await flaky.checkForUpdate(client) != nil)
            #expect(try await flaky.initiate(client, version: version).status == .ok)
            #expect(try await flaky.boot(client)["outcome"] as? String == "failed")
            #expect(try await flaky.checkForUpdate(client) != nil)
            #expect(try await flaky.initiate(client, version: version).status == .ok)
            #expect(try await flaky.boot(client, status: "rolled_back")["outcome"] as? String == "rolled_back")
            #expect(try await flaky.checkForUpdate(client) == nil)
            let check = try await client.execute(uri: "/ota/check/FLAKY?version=1.0.0", method: .get)
            #expect(check.json["update_available"] as? Bool == false)
            #expect((check.json["message"] as? String)?.contains("failed on this device (rolled_back)") == true, "\(check.json)")
        }
    }

    @Test func wrongVersionsChunksAndBodiesAreClearFourHundreds() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await Self.install(vectors, keys: keys, into: test)
        let version = vectors[0].version
        try await test.run { client in
            func expectError(_ response: TestResponse, _ status: HTTPResponse.Status, _ label: String) {
                #expect(response.status == status, "\(label): \(String(buffer: response.body))")
                #expect(response.json["success"] as? Bool == false, "\(label)")
                #expect((response.json["error"] as? String)?.isEmpty == false, "\(label)")
            }
            try await test.bind("BAD-1", client: client)
            // No session yet.
            expectError(try await client.execute(uri: "/ota/chunk/BAD-1?version=\(version)&chunk=0", method: .get), .conflict, "no session")
            expectError(try await client.postJSON("/ota/initiate/BAD-1", #"{"firmware_version":"0.0.404"}"#), .notFound, "unknown version")
            expectError(try await client.postJSON("/ota/initiate/BAD-1", #"{"firmware_version":"../../etc"}"#), .badRequest, "unsafe version")
            expectError(try await client.postJSON("/ota/initiate/BAD-1", #"{"version":"#), .badRequest, "malformed body")
            #expect(try await client.postJSON("/ota/initiate/BAD-1", #"{"firmware_version":"\#(version)"}"#).status == .ok)
            for chunk in ["-1", "3", "65536", "abc", ""] {
                expectError(
                    try await client.execute(uri: "/ota/chunk/BAD-1?version=\(version)&chunk=\(chunk)", method: .get),
                    .badRequest,
                    "chunk '\(chunk)'"
                )
            }
            expectError(try await client.execute(uri: "/ota/chunk/BAD-1?chunk=0", method: .get), .badRequest, "no version")
            expectError(try await client.execute(uri: "/ota/chunk/BAD-1?version=0.0.404&chunk=0", method: .get), .notFound, "unknown version")
            expectError(
                try await client.execute(uri: "/ota/chunk/BAD-1?version=\(vectors[1].version)&chunk=0", method: .get),
                .conflict,
                "other version than the session"
            )
            expectError(try await client.postJSON("/ota/BAD-1/progress", #"{"phase":"exploding"}"#), .badRequest, "phase")
            expectError(try await client.postJSON("/ota/BAD-1/complete", #"{"version":"1.0","status":"great"}"#), .badRequest, "status")
            expectError(try await client.postJSON("/ota/BAD-1/complete", #"{"status":"success"}"#), .badRequest, "no version")
            expectError(try await client.execute(uri: "/ota/check/BAD-1", method: .get), .badRequest, "check without version")
            // The operator cancels: the next chunk fails and the device retries later.
            let cancel = try await client.execute(uri: "/api/v1/devices/BAD-1/ota/cancel", method: .post, headers: test.operatorHeaders)
            #expect(cancel.status == .ok)
            expectError(try await client.execute(uri: "/ota/chunk/BAD-1?version=\(version)&chunk=0", method: .get), .conflict, "cancelled")
            let again = try await client.execute(uri: "/api/v1/devices/BAD-1/ota/cancel", method: .post, headers: test.operatorHeaders)
            #expect(again.status == .conflict && (again.json["error"] as? [String: Any])?["message"] != nil, "nothing to cancel")
            // Operator routes need the token.
            #expect(try await client.execute(uri: "/api/v1/firmwares", method: .get).status == .unauthorized)
            #expect(try await client.execute(uri: "/api/v1/stats/ota", method: .get).status == .unauthorized)
        }
    }

    @Test func operatorsUploadDeployAndDeleteFirmware() async throws {
        let test = try await TestServer()
        let keys = try FirmwareKeys(directory: test.server.configuration.security.keysDirectory)  // generated at start
        let image = [0xE9] + (1..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        try await test.run { client in
            var headers = test.operatorHeaders
            headers[.contentType] = "application/octet-stream"
            func upload(_ query: String, _ body: [UInt8], headers custom: HTTPFields? = nil) async throws -> TestResponse {
                try await client.execute(uri: "/api/v1/firmwares?\(query)", method: .post, headers: custom ?? headers, body: ByteBuffer(bytes: body))
            }
            let created = try await upload("version=2.0.0&description=fixes", image)
            #expect(created.status == .created, "\(String(buffer: created.body))")
            let manifest = try #require(created.json["manifest"] as? [String: Any])
            #expect(manifest["original_size"] as? Int == image.count && manifest["description"] as? String == "fixes")
            #expect(manifest["signature_scheme"] as? String == "pkcs1v15")
            #expect(try await upload("version=2.0.0", image).status == .conflict)
            #expect(try await upload("version=2.0.1", [0x7F, 0x45]).status == .unprocessableContent, "not an ESP image")
            #expect(try await upload("version=a%2Fb", image).status == .unprocessableContent)
            #expect(try await upload("description=no-version", image).status == .badRequest)
            var unauthenticated = headers
            unauthenticated[.authorization] = nil
            #expect(try await upload("version=2.0.3", image, headers: unauthenticated).status == .unauthorized)

            let list = try await client.execute(uri: "/api/v1/firmwares", method: .get, headers: test.operatorHeaders)
            let firmwares = try #require(list.json["items"] as? [[String: Any]])
            #expect(firmwares.map { $0["version"] as? String } == ["2.0.0"])
            #expect(firmwares.first?["signature_verified"] as? Bool == true)

            // The uploaded image downloads and verifies with the server's public key.
            let deployment = try await Self.deploy("2.0.0", to: ["UP-1"], client: client, test: test)
            var device = Device(id: "UP-1", running: "1.9.0", keys: keys)
            try await test.bind(device.id, client: client)  // a running device uploads
            let (receiver, _) = try await device.update(client)
            #expect(receiver.plaintext == image)

            // Deployed versions cannot be deleted; cancelled ones can, with every file.
            #expect(try await client.execute(uri: "/api/v1/firmwares/2.0.0", method: .delete, headers: test.operatorHeaders).status == .conflict)
            let cancelled = try await client.execute(uri: "/api/v1/deployments/\(deployment)/cancel", method: .post, headers: test.operatorHeaders)
            #expect(cancelled.status == .ok && cancelled.json["status"] as? String == "cancelled")
            let deleted = try await client.execute(uri: "/api/v1/firmwares/2.0.0", method: .delete, headers: test.operatorHeaders)
            #expect(deleted.status == .ok)
            #expect((deleted.json["removed"] as? [String])?.count == 2)
            #expect(FirmwareDirectory(path: test.server.configuration.ota.firmwareDirectory).versions().isEmpty)
            #expect(
                try await client.execute(uri: "/api/v1/firmwares/2.0.0/manifest", method: .get, headers: test.operatorHeaders).status == .notFound
            )
            #expect(try await client.operatorJSON(.post, "/api/v1/deployments", #"{"version":"2.0.0"}"#, server: test).status == .notFound)
        }
    }

    @Test func imagesSignedWithOtherKeysAreNotDeployed() async throws {
        let (keys, vectors) = try Self.vectors()
        let test = try await TestServer()  // the server generated its own keys; the vectors are signed with the test keys
        try await Self.install([vectors[0]], keys: keys, into: test)
        try await test.run { client in
            let response = try await client.operatorJSON(.post, "/api/v1/deployments", #"{"version":"\#(vectors[0].version)"}"#, server: test)
            #expect(response.status == .conflict)
            #expect(((response.json["error"] as? [String: Any])?["message"] as? String)?.contains("signature") == true)
        }
    }
}
