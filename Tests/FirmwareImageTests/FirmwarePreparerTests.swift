import Crypto
import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing
import _CryptoExtras

@testable import FirmwareImage

/// `fota_vectors.json` (spec §7.9, Appendix B): preparation reproduces every vector, and the device-side checks accept
/// the genuine images and reject each tampered variant at the step the vectors name.
@Suite struct FirmwarePreparerTests {
    struct Vector {
        let name: String
        let plaintext: [UInt8]
        let iv: [UInt8]
        let manifest: [String: Any]
        let updateInfo: [String: Any]
        let ciphertextSHA256: String
        let chunks: [[String: Any]]
        let tampered: [[String: Any]]
    }

    static func load() throws -> (keys: FirmwareKeys, publicPEM: String, vectors: [Vector]) {
        let root = try Conformance.fotaVectors()
        let testKeys = root["test_keys"] as! [String: Any]
        let keys = try FirmwareKeys(
            privateKey: _RSA.Signing.PrivateKey(pemRepresentation: testKeys["rsa_private_key_pem_pkcs8"] as! String),
            aesKey: Conformance.bytes(hex: testKeys["aes256_key_hex"] as! String)
        )
        let vectors = (root["vectors"] as! [[String: Any]]).map { vector in
            let plaintext = vector["plaintext"] as! [String: Any]
            return Vector(
                name: vector["name"] as! String,
                plaintext: Array(Data(base64Encoded: plaintext["base64"] as! String)!),
                iv: Conformance.bytes(hex: vector["iv_hex"] as! String),
                manifest: vector["manifest"] as! [String: Any],
                updateInfo: (vector["ota_check_response"] as! [String: Any])["update_info"] as! [String: Any],
                ciphertextSHA256: vector["ciphertext_sha256"] as! String,
                chunks: vector["chunks"] as! [[String: Any]],
                tampered: vector["tampered"] as! [[String: Any]]
            )
        }
        return (keys, testKeys["rsa_public_key_pem_spki"] as! String, vectors)
    }

    static func prepare(_ vector: Vector, keys: FirmwareKeys) throws -> PreparedFirmware {
        try FirmwarePreparer.prepare(
            image: vector.plaintext,
            version: vector.manifest["version"] as! String,
            keys: keys,
            iv: vector.iv,
            timestamp: vector.manifest["timestamp"] as? String
        )
    }

    /// The JSON object `value` as a Foundation dictionary, for comparison with the vectors.
    static func foundation(_ value: JSONValue) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(value.serialized.utf8)) as! [String: Any]
    }

    @Test func reproducesEveryVector() throws {
        let (keys, publicPEM, vectors) = try Self.load()
        #expect(
            keys.publicKey.pemRepresentation.trimmingCharacters(in: .whitespacesAndNewlines)
                == publicPEM.trimmingCharacters(in: .whitespacesAndNewlines)
        )
        #expect(vectors.count == 2)
        for vector in vectors {
            let prepared = try Self.prepare(vector, keys: keys)
            let manifest = try Self.foundation(prepared.manifest.json)
            for (key, expected) in vector.manifest {
                #expect("\(manifest[key] ?? "missing")" == "\(expected)", "\(vector.name): manifest field \(key)")
            }
            #expect(manifest["signature_scheme"] as? String == "pkcs1v15")
            let updateInfo = try Self.foundation(prepared.manifest.updateInfo)
            #expect(NSDictionary(dictionary: updateInfo).isEqual(to: vector.updateInfo), "\(vector.name): update_info")
            #expect(HexCoding.encode(Array(SHA256.hash(data: prepared.ciphertext))) == vector.ciphertextSHA256)
            #expect(prepared.manifest.totalChunks == vector.chunks.count)
            for chunk in vector.chunks {
                let index = chunk["index"] as! Int
                #expect(Data(prepared.chunk(index)).base64EncodedString() == chunk["base64"] as! String, "\(vector.name) chunk \(index)")
                #expect(prepared.chunk(index).count == chunk["size"] as! Int)
            }
            // The stored manifest bytes read back to the same manifest.
            #expect(try FirmwareManifest(bytes: prepared.manifestBytes) == prepared.manifest)
            #expect(prepared.signatureVerifies(keys: keys))
        }
    }

    /// Runs the device's checks over the vector's own chunk replies, with `updateInfo` and chunk edits applied.
    static func download(
        _ vector: Vector,
        keys: FirmwareKeys,
        updateInfo edit: (inout [String: Any]) -> Void = { _ in },
        chunk chunkEdit: (Int, inout [UInt8]) -> Void = { _, _ in }
    ) throws -> DeviceFirmwareReceiver {
        var info = vector.updateInfo
        edit(&info)
        let parsed = try JSONParser.parse(Array(try JSONSerialization.data(withJSONObject: info)))
        var receiver = try DeviceFirmwareReceiver(updateInfo: parsed, aesKey: keys.aesKey)
        for chunk in vector.chunks {
            var bytes = Array(Data(base64Encoded: chunk["base64"] as! String)!)
            chunkEdit(chunk["index"] as! Int, &bytes)
            try receiver.receive(
                reply: .object([
                    ("success", true), ("chunk_data", .string(Data(bytes).base64EncodedString())),
                    ("chunk_size", .int(Int64(bytes.count))),
                ])
            )
        }
        try receiver.verify(publicKey: keys.publicKey)
        return receiver
    }

    @Test func deviceAcceptsGenuineImagesAndRejectsTamperedOnes() throws {
        let (keys, _, vectors) = try Self.load()
        for vector in vectors {
            let receiver = try Self.download(vector, keys: keys)
            #expect(receiver.plaintext == vector.plaintext, "\(vector.name)")
            for tampered in vector.tampered {
                let expected: DeviceFirmwareReceiver.Failure
                switch tampered["device_fails_at"] as! String {
                case "sha256": expected = .sha256
                case "rsa_pkcs1v15": expected = .rsaPKCS1v15
                case "chunk0_magic": expected = .chunk0Magic
                case let other:
                    Issue.record("unknown check \(other)")
                    continue
                }
                let failure = #expect(throws: DeviceFirmwareReceiver.Failure.self, "\(vector.name) \(tampered["case"]!)") {
                    switch tampered["case"] as! String {
                    case "sha256_uppercase":
                        _ = try Self.download(vector, keys: keys) { $0["sha256_hash"] = ($0["sha256_hash"] as! String).uppercased() }
                    case "signature_pss":
                        _ = try Self.download(vector, keys: keys) { $0["signature"] = tampered["signature"] }
                    case "chunk_bit_flip":
                        _ = try Self.download(vector, keys: keys, chunk: { index, bytes in if index == 1 { bytes[100] ^= 1 } })
                    case "wrong_iv":
                        _ = try Self.download(vector, keys: keys) { $0["iv"] = Data(count: 16).base64EncodedString() }
                    case let other: Issue.record("unknown case \(other)")
                    }
                }
                #expect(failure == expected, "\(vector.name) \(tampered["case"]!)")
            }
        }
    }

    @Test func pssSignaturesVerifyOnlyAsPSS() throws {
        let (keys, _, vectors) = try Self.load()
        let prepared = try FirmwarePreparer.prepare(image: vectors[0].plaintext, version: "pss-1", keys: keys, scheme: .pss)
        #expect(prepared.manifest.signatureScheme == .pss)
        #expect(prepared.signatureVerifies(keys: keys))
        // The field firmware verifies PKCS#1 v1.5 and rejects it.
        var receiver = try DeviceFirmwareReceiver(updateInfo: prepared.manifest.updateInfo, aesKey: keys.aesKey)
        while !receiver.isComplete {
            let chunk = prepared.chunk(receiver.nextChunk)
            try receiver.receive(
                reply: .object([
                    ("success", true), ("chunk_data", .string(Data(chunk).base64EncodedString())), ("chunk_size", .int(Int64(chunk.count))),
                ])
            )
        }
        #expect(throws: DeviceFirmwareReceiver.Failure.rsaPKCS1v15) { try receiver.verify(publicKey: keys.publicKey) }
    }

    @Test func refusesUnusableImagesAndVersions() throws {
        let keys = try FirmwareKeys.generate()
        #expect(throws: FirmwareError.self) { try FirmwarePreparer.prepare(image: [0x7F, 0x45, 0x4C, 0x46], version: "1.0", keys: keys) }
        #expect(throws: FirmwareError.self) { try FirmwarePreparer.prepare(image: [], version: "1.0", keys: keys) }
        for version in ["", "../x", "a/b", "1.0 beta", ".hidden", "-rf", "1.0?chunk=1", String(repeating: "9", count: 65)] {
            #expect(!FirmwareVersion.isValid(version), "\(version)")
            #expect(throws: FirmwareError.invalidVersion(version)) { try FirmwarePreparer.prepare(image: [0xE9], version: version, keys: keys) }
        }
        for version in ["1.3.4", "v2_rc-1", "2026.11.23"] { #expect(FirmwareVersion.isValid(version)) }
    }

    /// Encrypting in progress steps gives the same bytes as one-shot AES-CBC, and reports progress.
    @Test func largeImagesReportProgressAndMatchOneShotEncryption() throws {
        let keys = try FirmwareKeys.generate()
        var image = (0..<300_001).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        image[0] = 0xE9
        var reports: [Int] = []
        let iv = [UInt8](repeating: 7, count: 16)
        let prepared = try FirmwarePreparer.prepare(image: image, version: "big", keys: keys, iv: iv) { done, total in
            #expect(total == image.count)
            reports.append(done)
        }
        #expect(reports.count == 5 && reports.last == image.count && reports == reports.sorted())
        let oneShot = try AES._CBC.encrypt(image, using: keys.symmetricKey, iv: AES._CBC.IV(ivBytes: iv))
        #expect(prepared.ciphertext == Array(oneShot))
        #expect(prepared.manifest.totalChunks == (image.count / 16 + 1) * 16 / 2048 + 1)
    }

    @Test func keysRoundTripThroughFilesWithPrivateModes() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keys = try FirmwareKeys.generate()
        let written = try keys.write(to: directory)
        #expect(written.count == 5)
        for path in written {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! Int
            #expect(mode == 0o600, "\(path)")
        }
        let loaded = try FirmwareKeys(directory: directory)
        #expect(loaded.aesKey == keys.aesKey)
        #expect(loaded.publicKey.derRepresentation == keys.publicKey.derRepresentation)
        // Never over existing keys without overwrite.
        #expect(throws: FirmwareError.self) { try FirmwareKeys.generate().write(to: directory) }
        #expect(try FirmwareKeys(directory: directory).aesKey == keys.aesKey)
        // The firmware's files carry the public key and the AES key.
        let source = try String(contentsOfFile: (directory as NSString).appendingPathComponent(FirmwareKeys.sourceFile), encoding: .utf8)
        #expect(source.contains("const char* SERVER_PUBLIC_KEY ="))
        #expect(source.contains(String(format: "0x%02x, 0x%02x", keys.aesKey[0], keys.aesKey[1])))
        #expect(source.contains("HMAC_PSK = \""))
        // A public key that belongs to another private key is refused.
        try Data(try FirmwareKeys.generate().publicKey.pemRepresentation.utf8)
            .write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(FirmwareKeys.publicKeyFile)))
        #expect(throws: FirmwareError.self) { try FirmwareKeys(directory: directory) }
    }

    /// Issue 15: the key files drop into the firmware's tree and compile and link there, included from several
    /// translation units (the firmware includes keys.h from its OTA and security code).
    @Test func theFirmwareKeyFilesCompileAndLinkInTheFirmwareLayout() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fwkeys-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keys = try FirmwareKeys.generate()
        try keys.write(to: directory)
        let firmware = (directory as NSString).appendingPathComponent("firmware")
        let ota = """
            #include <stdio.h>
            #include <string.h>
            #include "application/keys.h"
            const char* pem_head(void) { return SERVER_PUBLIC_KEY; }
            int main(void) {
                printf("%02x %d %zu\\n", AES_FIRMWARE_KEY[0], strncmp(pem_head(), "-----BEGIN PUBLIC KEY-----", 26), strlen(HMAC_PSK));
                return 0;
            }
            """
        let security = """
            #include "application/keys.h"
            int key_bits(void) { return RSA_KEY_SIZE + AES_FIRMWARE_KEY[31] * 0; }
            """
        try ota.write(toFile: firmware + "/src/ota.cpp", atomically: true, encoding: .utf8)
        try security.write(toFile: firmware + "/src/security.cpp", atomically: true, encoding: .utf8)
        let binary = firmware + "/keys-check"
        let compile = try ChildProcess.runBlocking(
            "clang++",
            [
                "-Wall", "-Werror", "-I", firmware + "/include", firmware + "/src/application/keys.cpp", firmware + "/src/ota.cpp",
                firmware + "/src/security.cpp", "-o", binary,
            ]
        )
        #expect(compile.status == 0, "clang++ compiles and links the key files with two users of keys.h: \(compile.error)")
        let printed = try ChildProcess.runBlocking(binary, []).output
        #expect(printed == String(format: "%02x 0 64\n", keys.aesKey[0]))
    }

    @Test func directoryStoresLoadsAndDeletesEveryFileOfAVersion() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (keys, _, vectors) = try Self.load()
        let directory = FirmwareDirectory(path: path)
        let prepared = try Self.prepare(vectors[0], keys: keys)
        try directory.save(prepared)
        #expect(throws: FirmwareError.versionExists("9.9.9")) { try directory.save(prepared) }
        #expect(directory.versions() == ["9.9.9"])
        let loaded = try directory.load("9.9.9")
        #expect(loaded.manifestBytes == prepared.manifestBytes && loaded.ciphertext == prepared.ciphertext)
        // A truncated image is refused rather than served.
        try Data(prepared.ciphertext.dropLast(16)).write(to: URL(fileURLWithPath: directory.encryptedPath("9.9.9")))
        #expect(throws: FirmwareError.self) { try directory.load("9.9.9") }
        #expect(FileManager.default.createFile(atPath: (path as NSString).appendingPathComponent("firmware_v9.9.9.bin"), contents: Data([1])))
        #expect(try directory.delete("9.9.9").count == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: path).isEmpty)
        #expect(throws: FirmwareError.notFound("9.9.9")) { try directory.delete("9.9.9") }
    }
}
