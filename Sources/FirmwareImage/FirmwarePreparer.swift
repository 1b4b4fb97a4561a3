import Crypto
import EcoWattProtocol
import Foundation
import _CryptoExtras

/// Turns a plaintext ESP32 image into what devices download (spec §7.7): SHA-256 and RSA signature over the
/// plaintext, PKCS#7 padding, AES-256-CBC with a random IV, 2048-byte chunks.
public enum FirmwarePreparer {
    /// ESP image magic: the first byte of every ESP32 application image (the device checks it after chunk 0).
    public static let espImageMagic: UInt8 = 0xE9
    /// Largest image accepted (the ESP32's largest flash).
    public static let maxImageBytes = 16 << 20
    /// Ciphertext bytes per chunk, as the original server and the firmware use.
    public static let chunkSize = 2048
    /// Bytes encrypted between two progress reports.
    static let progressStep = 64 * 1024

    /// Prepares `image`.
    /// - Parameters:
    ///   - iv: the CBC IV; random when `nil` (tests pass the vectors' fixed IV).
    ///   - timestamp: the manifest's `timestamp`; now (UTC, ISO 8601) when `nil`.
    ///   - progress: called with (bytes encrypted, total bytes) while encrypting.
    public static func prepare(
        image: [UInt8],
        version: String,
        description: String? = nil,
        keys: FirmwareKeys,
        scheme: SignatureScheme = .pkcs1v15,
        iv: [UInt8]? = nil,
        timestamp: String? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws(FirmwareError) -> PreparedFirmware {
        try FirmwareVersion.validate(version)
        guard !image.isEmpty else { throw .image("the image is empty") }
        guard image.count <= maxImageBytes else { throw .image("the image is larger than \(maxImageBytes) bytes") }
        guard image[0] == espImageMagic else {
            throw .image(
                "not an ESP32 application image: the first byte is 0x\(HexCoding.byteLabel(image[0])), not 0xE9"
            )
        }
        if let description, description.utf8.count > 1024 { throw .image("the description is longer than 1024 bytes") }
        let ivBytes = iv ?? (0..<16).map { _ in UInt8.random(in: 0...255) }
        guard ivBytes.count == 16 else { throw .image("the IV must be 16 bytes") }

        let digest = SHA256.hash(data: image)
        let signature: _RSA.Signing.RSASignature
        do {
            signature = try keys.privateKey.signature(for: digest, padding: scheme == .pss ? .PSS : .insecurePKCS1v1_5)
        } catch {
            throw .keys("signing failed: \(error)")
        }
        let ciphertext = try encrypt(image, key: keys.symmetricKey, iv: ivBytes, progress: progress)
        let manifest = FirmwareManifest(
            version: version,
            originalSize: image.count,
            encryptedSize: ciphertext.count,
            sha256Hash: HexCoding.encode(Array(digest)),
            signature: signature.rawRepresentation.base64EncodedString(),
            iv: Data(ivBytes).base64EncodedString(),
            chunkSize: chunkSize,
            totalChunks: (ciphertext.count + chunkSize - 1) / chunkSize,
            timestamp: timestamp ?? Date().formatted(.iso8601),
            signatureScheme: scheme,
            description: description
        )
        return PreparedFirmware(manifestBytes: manifest.serialized(), manifest: manifest, ciphertext: ciphertext)
    }

    /// AES-256-CBC with PKCS#7 padding, in steps so long images can report progress. Every step but the last is a
    /// whole number of blocks chained through its last ciphertext block, so the result equals one-shot encryption.
    static func encrypt(
        _ image: [UInt8],
        key: SymmetricKey,
        iv: [UInt8],
        progress: ((Int, Int) -> Void)?
    ) throws(FirmwareError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(image.count + 16)
        var chain = iv
        var offset = 0
        do {
            while image.count - offset > progressStep {
                let part = try AES._CBC.encrypt(
                    image[offset..<offset + progressStep],
                    using: key,
                    iv: AES._CBC.IV(ivBytes: chain),
                    noPadding: true
                )
                output.append(contentsOf: part)
                chain = Array(part.suffix(16))
                offset += progressStep
                progress?(offset, image.count)
            }
            output.append(contentsOf: try AES._CBC.encrypt(image[offset...], using: key, iv: AES._CBC.IV(ivBytes: chain)))
        } catch {
            throw .image("encryption failed: \(error)")
        }
        progress?(image.count, image.count)
        return output
    }
}

/// A prepared image: its manifest (and the exact stored bytes of it) and the ciphertext.
public struct PreparedFirmware: Sendable {
    /// The manifest file's bytes, served and stored as they are.
    public let manifestBytes: [UInt8]
    public let manifest: FirmwareManifest
    /// The whole AES-256-CBC ciphertext.
    public let ciphertext: [UInt8]

    public init(manifestBytes: [UInt8], manifest: FirmwareManifest, ciphertext: [UInt8]) {
        self.manifestBytes = manifestBytes
        self.manifest = manifest
        self.ciphertext = ciphertext
    }

    /// A stored image read back (from files or a database row), checked: the manifest parses, names `version`, and
    /// gives the ciphertext's size.
    public init(stored manifestBytes: [UInt8], ciphertext: [UInt8], version: String) throws(FirmwareError) {
        let manifest = try FirmwareManifest(bytes: manifestBytes)
        guard manifest.version == version else { throw .manifest("the manifest of \(version) describes version \(manifest.version)") }
        guard ciphertext.count == manifest.encryptedSize else {
            throw .manifest("the image of \(version) has \(ciphertext.count) bytes, its manifest says \(manifest.encryptedSize)")
        }
        self.init(manifestBytes: manifestBytes, manifest: manifest, ciphertext: ciphertext)
    }

    /// The ciphertext of chunk `index` (in `0..<manifest.totalChunks`).
    public func chunk(_ index: Int) -> ArraySlice<UInt8> {
        let start = index * manifest.chunkSize
        return ciphertext[start..<min(start + manifest.chunkSize, ciphertext.count)]
    }

    /// True if the signature verifies over the plaintext with `publicKey`: decrypts the image, so use it when loading,
    /// not per request.
    public func signatureVerifies(keys: FirmwareKeys) -> Bool {
        guard let iv = Data(base64Encoded: manifest.iv), let signature = Data(base64Encoded: manifest.signature),
            let plaintext = try? AES._CBC.decrypt(ciphertext, using: keys.symmetricKey, iv: AES._CBC.IV(ivBytes: iv)),
            plaintext.count == manifest.originalSize
        else { return false }
        let digest = SHA256.hash(data: plaintext)
        guard HexCoding.encode(Array(digest)) == manifest.sha256Hash else { return false }
        return keys.publicKey.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: signature),
            for: digest,
            padding: manifest.signatureScheme == .pss ? .PSS : .insecurePKCS1v1_5
        )
    }
}
