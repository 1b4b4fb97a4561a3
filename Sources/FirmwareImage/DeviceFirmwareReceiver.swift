import Crypto
import EcoWattProtocol
import Foundation
import _CryptoExtras

/// What the field firmware does with an offered update (spec §7.2–§7.4, `OTAManager.cpp`), step by step and with the
/// same acceptance checks: for device emulators (tests, `ecowatt simulate`, benchmarks).
public struct DeviceFirmwareReceiver: Sendable {
    /// The check at which a device gives up.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// `update_info` is missing a field or has one the device rejects (IV length, sizes).
        case updateInfo(String)
        /// A chunk reply the device cannot use (not base64, size mismatch, not a multiple of 16, over 2064 bytes).
        case chunk(Int, String)
        /// Chunk 0 did not decrypt to the ESP image magic 0xE9 (wrong key or IV).
        case chunk0Magic
        /// The written plaintext is not `original_size` bytes.
        case size(written: Int, expected: Int)
        /// SHA-256 of the plaintext differs from `sha256_hash` (string comparison, so upper-case hex fails too).
        case sha256
        /// The signature is not RSASSA-PKCS1-v1_5/SHA-256 by the trusted key.
        case rsaPKCS1v15

        public var description: String {
            switch self {
            case .updateInfo(let reason): "update_info: \(reason)"
            case .chunk(let index, let reason): "chunk \(index): \(reason)"
            case .chunk0Magic: "chunk 0 does not start with 0xE9"
            case .size(let written, let expected): "wrote \(written) bytes, expected \(expected)"
            case .sha256: "SHA-256 mismatch"
            case .rsaPKCS1v15: "RSA PKCS#1 v1.5 signature invalid"
            }
        }
    }

    /// `latest_version`: the version the device requests chunks of.
    public let version: String
    public let originalSize: Int
    public let totalChunks: Int
    let sha256Hash: String
    let signature: [UInt8]
    let key: SymmetricKey
    /// The CBC chaining value: the manifest IV, then the last ciphertext block of the previous chunk.
    var chain: [UInt8]
    /// Plaintext written so far.
    public private(set) var plaintext: [UInt8] = []
    /// The next chunk index the device will request.
    public private(set) var nextChunk = 0

    /// Largest decoded chunk the device's buffer holds (`OTA_CHUNK_SIZE + 16`).
    public static let maxChunkBytes = 2064
    /// Default OTA partition size.
    public static let partitionBytes = FirmwareManifest.defaultPartitionBytes

    /// Accepts an `update_info` object as the device does.
    public init(updateInfo: JSONValue, aesKey: [UInt8]) throws(Failure) {
        guard let version = updateInfo["latest_version"]?.stringValue else { throw .updateInfo("latest_version missing") }
        guard let original = (updateInfo["original_size"]?.intValue ?? updateInfo["firmware_size"]?.intValue).flatMap({ Int(exactly: $0) }),
            original > 0
        else { throw .updateInfo("original_size missing") }
        let encrypted = updateInfo["encrypted_size"]?.intValue.flatMap { Int(exactly: $0) } ?? original
        guard encrypted <= Self.partitionBytes else { throw .updateInfo("encrypted_size exceeds the OTA partition") }
        guard let iv = updateInfo["iv"]?.stringValue.flatMap({ Data(base64Encoded: $0) }), iv.count == 16 else {
            throw .updateInfo("Invalid IV length")
        }
        guard let total = updateInfo["total_chunks"]?.intValue.flatMap({ Int(exactly: $0) }), (1...65535).contains(total) else {
            throw .updateInfo("total_chunks missing")
        }
        self.version = version
        self.originalSize = original
        self.totalChunks = total
        self.sha256Hash = updateInfo["sha256_hash"]?.stringValue ?? ""
        self.signature = updateInfo["signature"]?.stringValue.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        self.key = SymmetricKey(data: aesKey)
        self.chain = Array(iv)
    }

    /// Takes the reply to `GET /ota/chunk/{id}?version=…&chunk=<nextChunk>`.
    public mutating func receive(reply: JSONValue) throws(Failure) {
        let index = nextChunk
        guard reply["success"]?.boolValue == true else {
            throw .chunk(index, "success is not true: \(reply["error"]?.stringValue ?? "no error given")")
        }
        guard let text = reply["chunk_data"]?.stringValue, let data = Data(base64Encoded: text) else {
            throw .chunk(index, "chunk_data is not plain base64")
        }
        guard reply["chunk_size"]?.intValue == Int64(data.count) else {
            throw .chunk(index, "chunk_size does not match the decoded length \(data.count)")
        }
        guard data.count % 16 == 0, data.count <= Self.maxChunkBytes, !data.isEmpty else {
            throw .chunk(index, "decoded length \(data.count) is not a multiple of 16 up to \(Self.maxChunkBytes)")
        }
        var block: [UInt8]
        do {
            block = Array(try AES._CBC.decrypt(data, using: key, iv: AES._CBC.IV(ivBytes: chain), noPadding: true))
        } catch {
            throw .chunk(index, "decryption failed: \(error)")
        }
        chain = Array(data.suffix(16))
        if index == 0, block.first != FirmwarePreparer.espImageMagic { throw .chunk0Magic }
        if index == totalChunks - 1, let pad = block.last, (1...16).contains(pad), block.count >= Int(pad),
            block.suffix(Int(pad)).allSatisfy({ $0 == pad })
        {
            block.removeLast(Int(pad))
        }
        guard plaintext.count + block.count <= originalSize else {
            throw .size(written: plaintext.count + block.count, expected: originalSize)
        }
        plaintext.append(contentsOf: block)
        nextChunk += 1
    }

    /// True once every chunk was received.
    public var isComplete: Bool { nextChunk == totalChunks }

    /// `Update.end()` and the security verification: size, SHA-256 string comparison, PKCS#1 v1.5 signature.
    public func verify(publicKey: _RSA.Signing.PublicKey) throws(Failure) {
        guard plaintext.count == originalSize else { throw .size(written: plaintext.count, expected: originalSize) }
        let digest = SHA256.hash(data: plaintext)
        guard HexCoding.encode(Array(digest)) == sha256Hash else { throw .sha256 }
        guard signature.count == 256,
            publicKey.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature),
                for: digest,
                padding: .insecurePKCS1v1_5
            )
        else { throw .rsaPKCS1v15 }
    }
}
