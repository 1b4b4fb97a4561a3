import EcoWattProtocol
import Foundation

/// The manifest of a prepared firmware image (spec §7.7), the source of the `update_info` the device downloads with.
///
/// The manifest is stored as the bytes ``serialized()`` produced once; those stored bytes are what the server serves,
/// never a re-encoding.
public struct FirmwareManifest: Sendable, Equatable {
    public var version: String
    /// Plaintext bytes; the device writes exactly this many.
    public var originalSize: Int
    /// Ciphertext bytes (PKCS#7 padded, a multiple of 16).
    public var encryptedSize: Int
    /// Lower-case hex SHA-256 of the plaintext.
    public var sha256Hash: String
    /// Base64 of the 256-byte RSA signature over the plaintext.
    public var signature: String
    /// Base64 of the 16-byte CBC IV.
    public var iv: String
    /// Ciphertext bytes per chunk (2048).
    public var chunkSize: Int
    /// `ceil(encryptedSize / chunkSize)`.
    public var totalChunks: Int
    /// When the image was prepared (ISO 8601).
    public var timestamp: String
    /// How ``signature`` was made.
    public var signatureScheme: SignatureScheme
    /// Operator notes.
    public var description: String?

    /// The device's buffer holds `OTA_CHUNK_SIZE + 16` = 2064 bytes, and the chunk reply must fit its 3072-byte pool.
    public static let maxChunkSize = 2048
    /// Partition size of the firmware's default partition table (0x140000); larger images fail `Update.begin`.
    public static let defaultPartitionBytes = 1_310_720

    public init(
        version: String,
        originalSize: Int,
        encryptedSize: Int,
        sha256Hash: String,
        signature: String,
        iv: String,
        chunkSize: Int,
        totalChunks: Int,
        timestamp: String,
        signatureScheme: SignatureScheme,
        description: String?
    ) {
        self.version = version
        self.originalSize = originalSize
        self.encryptedSize = encryptedSize
        self.sha256Hash = sha256Hash
        self.signature = signature
        self.iv = iv
        self.chunkSize = chunkSize
        self.totalChunks = totalChunks
        self.timestamp = timestamp
        self.signatureScheme = signatureScheme
        self.description = description
    }

    /// The manifest object: the fields of spec §7.7 in the original order, then `signature_scheme` and `description`.
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("version", .string(version)), ("original_size", .int(Int64(originalSize))),
            ("encrypted_size", .int(Int64(encryptedSize))), ("sha256_hash", .string(sha256Hash)),
            ("signature", .string(signature)), ("iv", .string(iv)), ("chunk_size", .int(Int64(chunkSize))),
            ("total_chunks", .int(Int64(totalChunks))), ("timestamp", .string(timestamp)),
            ("signature_scheme", .string(signatureScheme.rawValue)),
        ]
        if let description { members.append(("description", .string(description))) }
        return .object(members)
    }

    /// The bytes to store (and later serve): ``json`` serialized once, with a final newline.
    public func serialized() -> [UInt8] { Array((json.serialized + "\n").utf8) }

    /// The `update_info` object of `GET /ota/check` (spec §7.2): only the fields the device reads.
    public var updateInfo: JSONValue {
        .object([
            ("latest_version", .string(version)), ("original_size", .int(Int64(originalSize))),
            ("encrypted_size", .int(Int64(encryptedSize))), ("sha256_hash", .string(sha256Hash)),
            ("signature", .string(signature)), ("iv", .string(iv)), ("chunk_size", .int(Int64(chunkSize))),
            ("total_chunks", .int(Int64(totalChunks))),
        ])
    }

    /// Reads and checks stored manifest bytes: every field the device relies on must be consistent, so a hand-edited or
    /// foreign manifest is refused here instead of failing on devices.
    public init(bytes: [UInt8]) throws(FirmwareError) {
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw .manifest("not JSON (\(error.description))")
        }
        func string(_ key: String) throws(FirmwareError) -> String {
            guard let value = json[key]?.stringValue else { throw .manifest("\(key) must be a string") }
            return value
        }
        func integer(_ key: String) throws(FirmwareError) -> Int {
            guard let value = json[key]?.intValue, let number = Int(exactly: value), number >= 0 else {
                throw .manifest("\(key) must be a non-negative integer")
            }
            return number
        }
        version = try string("version")
        guard FirmwareVersion.isValid(version) else { throw .invalidVersion(version) }
        originalSize = try integer("original_size")
        encryptedSize = try integer("encrypted_size")
        sha256Hash = try string("sha256_hash")
        signature = try string("signature")
        iv = try string("iv")
        chunkSize = try integer("chunk_size")
        totalChunks = try integer("total_chunks")
        timestamp = json["timestamp"]?.stringValue ?? ""
        signatureScheme = json["signature_scheme"]?.stringValue.flatMap(SignatureScheme.init(rawValue:)) ?? .pkcs1v15
        description = json["description"]?.stringValue
        guard originalSize > 0, encryptedSize % 16 == 0, encryptedSize > originalSize, encryptedSize - originalSize <= 16 else {
            throw .manifest("encrypted_size \(encryptedSize) is not the PKCS#7-padded original_size \(originalSize)")
        }
        guard chunkSize > 0, chunkSize % 16 == 0, chunkSize <= Self.maxChunkSize else {
            throw .manifest("chunk_size must be a multiple of 16 up to \(Self.maxChunkSize)")
        }
        guard totalChunks == (encryptedSize + chunkSize - 1) / chunkSize, totalChunks <= 65535 else {
            throw .manifest("total_chunks \(totalChunks) does not match encrypted_size / chunk_size")
        }
        guard sha256Hash.utf8.count == 64, HexCoding.decode(sha256Hash, lowercaseOnly: true) != nil else {
            throw .manifest("sha256_hash must be 64 lower-case hex characters (the device compares strings)")
        }
        guard Data(base64Encoded: signature)?.count == 256 else { throw .manifest("signature must be base64 of 256 bytes") }
        guard Data(base64Encoded: iv)?.count == 16 else { throw .manifest("iv must be base64 of 16 bytes") }
    }
}

/// The RSA signature padding of a firmware image.
public enum SignatureScheme: String, Sendable, CaseIterable {
    /// RSASSA-PKCS1-v1_5 with SHA-256: what the field firmware verifies (spec §7.4).
    case pkcs1v15
    /// RSASSA-PSS with SHA-256 and a 32-byte salt: rejected by the field firmware; for future firmware only.
    case pss
}
