import EcoWattProtocol
import EcoWattServer
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import Testing
import _CryptoExtras

/// What the FOTA tests share (here and in the rollout tests): the conformance vectors, installing and deploying them, and
/// a device emulator that makes exactly the firmware's requests and checks (spec §7.1–§7.6).
extension OTAHTTPTests {
    struct Vector: Sendable {
        let plaintext: [UInt8]
        let iv: [UInt8]
        let manifest: JSONValue
        let updateInfo: JSONValue
        let chunkResponses: [JSONValue]
        var version: String { manifest["version"]!.stringValue! }
    }

    static func vectors() throws -> (FirmwareKeys, [Vector]) {
        let root = try JSONParser.parse(Array(Data(contentsOf: Conformance.directory.appendingPathComponent("fota_vectors.json"))))
        let testKeys = root["test_keys"]!
        let keys = try FirmwareKeys(
            privateKey: _RSA.Signing.PrivateKey(pemRepresentation: testKeys["rsa_private_key_pem_pkcs8"]!.stringValue!),
            aesKey: Conformance.bytes(hex: testKeys["aes256_key_hex"]!.stringValue!)
        )
        guard case .array(let items) = root["vectors"]! else { throw CancellationError() }
        let vectors = items.map { vector in
            guard case .array(let chunks) = vector["chunks"]! else { fatalError("chunks") }
            return Vector(
                plaintext: Array(Data(base64Encoded: vector["plaintext"]!["base64"]!.stringValue!)!),
                iv: Conformance.bytes(hex: vector["iv_hex"]!.stringValue!),
                manifest: vector["manifest"]!,
                updateInfo: vector["ota_check_response"]!["update_info"]!,
                chunkResponses: chunks.map { $0["response"]! }
            )
        }
        return (keys, vectors)
    }

    /// An object's members by key (order-insensitive comparison).
    static func members(_ value: JSONValue?) -> [String: String] {
        guard case .object(let members) = value else { return [:] }
        return Dictionary(members.map { ($0.0, $0.1.serialized) }, uniquingKeysWith: { first, _ in first })
    }

    /// Prepares the vectors into the server's firmware directory as `ecowatt firmware prepare` would (fixed IV).
    /// Stores the vectors' images in the server's firmware store (its `firmware_dir`, or PostgreSQL).
    static func install(_ vectors: [Vector], keys: FirmwareKeys, into test: TestServer) async throws {
        for vector in vectors {
            try await test.server.storage.firmware.addFirmwareImage(
                FirmwarePreparer.prepare(
                    image: vector.plaintext,
                    version: vector.version,
                    keys: keys,
                    iv: vector.iv,
                    timestamp: vector.manifest["timestamp"]?.stringValue
                )
            )
        }
    }

    static func deploy(
        _ version: String,
        to devices: [String]?,
        client: some TestClientProtocol,
        test: TestServer,
        maxAttempts: Int = 5
    )
        async throws -> Int64
    {
        let target = devices.map { #","device_ids":["# + $0.map { "\"\($0)\"" }.joined(separator: ",") + "]" } ?? ""
        let response = try await client.operatorJSON(
            .post,
            "/api/v1/deployments",
            #"{"version":"\#(version)"\#(target),"max_attempts":\#(maxAttempts),"create":true}"#,
            server: test
        )
        #expect(response.status == .created, "\(String(buffer: response.body))")
        return Int64(response.json["id"] as? Int ?? -1)
    }

    /// A device emulator: exactly the firmware's requests and checks.
    struct Device {
        let id: String
        var running: String
        let keys: FirmwareKeys
        /// The request sizes the device saw, checked against its pools.
        var pools: [(String, Int, Int)] = []

        init(id: String, running: String, keys: FirmwareKeys) {
            self.id = id
            self.running = running
            self.keys = keys
        }

        static func parse(_ response: TestResponse) throws -> JSONValue { try JSONParser.parse(Array(response.body.readableBytesView)) }

        mutating func checkForUpdate(_ client: some TestClientProtocol) async throws -> JSONValue? {
            let response = try await client.execute(uri: "/ota/check/\(id)?version=\(running)", method: .get)
            #expect(response.status == .ok)
            let text = String(buffer: response.body)
            pools.append(("check", try ArduinoJSONPool.bytes(text), 2048))
            let json = try Self.parse(response)
            return json["update_available"] == .bool(true) ? json["update_info"] : nil
        }

        mutating func progress(_ client: some TestClientProtocol, _ phase: String, _ percent: Int, _ message: String) async throws {
            let response = try await client.postJSON(
                "/ota/\(id)/progress",
                #"{"phase":"\#(phase)","progress":\#(percent),"message":"\#(message)","timestamp":1764300000}"#
            )
            #expect(response.status == .ok, "\(phase): \(String(buffer: response.body))")
        }

        mutating func initiate(_ client: some TestClientProtocol, version: String) async throws -> TestResponse {
            let response = try await client.postJSON("/ota/initiate/\(id)", #"{"firmware_version":"\#(version)"}"#)
            if response.status == .ok { pools.append(("initiate", try ArduinoJSONPool.bytes(String(buffer: response.body)), 512)) }
            return response
        }

        /// Chunks from `receiver.nextChunk` up to (excluding) `end`.
        mutating func fetch(
            _ client: some TestClientProtocol,
            _ receiver: inout DeviceFirmwareReceiver,
            until end: Int? = nil
        )
            async throws -> [String]
        {
            var bodies: [String] = []
            while receiver.nextChunk < (end ?? receiver.totalChunks) {
                let n = receiver.nextChunk
                let response = try await client.execute(uri: "/ota/chunk/\(id)?version=\(receiver.version)&chunk=\(n)", method: .get)
                try #require(response.status == .ok, "chunk \(n): \(String(buffer: response.body))")
                let text = String(buffer: response.body)
                bodies.append(text)
                pools.append(("chunk", try ArduinoJSONPool.bytes(text), 3072))
                try receiver.receive(reply: try Self.parse(response))
                let percent = (n + 1) * 100 / receiver.totalChunks
                if n % 50 == 0 || percent % 10 == 0 {
                    try await progress(client, "downloading", percent, "Downloading chunk \(n + 1) of \(receiver.totalChunks)")
                }
            }
            return bodies
        }

        /// Verification, install and the boot report with the new version (spec §7.1 steps 7–10).
        mutating func install(_ client: some TestClientProtocol, _ receiver: DeviceFirmwareReceiver) async throws -> [String: Any] {
            try await progress(client, "download_complete", 100, "Download complete, verifying security...")
            try await progress(client, "verifying", 100, "Verifying firmware security...")
            try receiver.verify(publicKey: keys.publicKey)
            try await progress(client, "verification_success", 100, "Security verification passed - Installing firmware")
            try await progress(client, "installing", 100, "Installing new firmware - Device will reboot")
            running = receiver.version
            return try await boot(client)
        }

        /// The boot report sent on every boot.
        func boot(_ client: some TestClientProtocol, status: String = "success") async throws -> [String: Any] {
            let response = try await client.postJSON(
                "/ota/\(id)/complete",
                #"{"version":"\#(running)","status":"\#(status)","timestamp":1764300100}"#
            )
            #expect(response.status == .ok)
            return response.json
        }

        /// check → progress → initiate → every chunk → verify → install → complete.
        mutating func update(_ client: some TestClientProtocol) async throws -> (DeviceFirmwareReceiver, [String]) {
            let info = try #require(try await checkForUpdate(client), "\(id) was offered no update")
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            try await progress(client, "downloading", 0, "Starting firmware download...")
            #expect(try await initiate(client, version: receiver.version).status == .ok)
            let bodies = try await fetch(client, &receiver)
            let report = try await install(client, receiver)
            #expect(report["outcome"] as? String == "success", "\(report)")
            return (receiver, bodies)
        }

        /// Replies fit the device's pools with a 10 % margin; a chunk reply is the spec's minimal three members around
        /// 2048 bytes of base64 (2811 of 3072 bytes), so it only has to fit.
        func checkPools() {
            for (route, bytes, pool) in pools {
                #expect(bytes <= (route == "chunk" ? pool : pool * 9 / 10), "\(route) reply needs \(bytes) of \(pool) pool bytes")
            }
        }
    }
}
