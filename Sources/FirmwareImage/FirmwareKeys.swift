import Crypto
import EcoWattProtocol
import Foundation
import _CryptoExtras

/// The FOTA key set: the RSA-2048 key pair whose public half the firmware trusts, and the 32-byte AES-256 key the
/// firmware decrypts images with (spec §2.5, §7.7).
///
/// Files in the keys directory keep the original server's names, so an existing deployment's keys drop in unchanged.
public struct FirmwareKeys: Sendable {
    /// PKCS#8 PEM RSA private key.
    public static let privateKeyFile = "server_private_key.pem"
    /// SubjectPublicKeyInfo PEM RSA public key.
    public static let publicKeyFile = "server_public_key.pem"
    /// 32 raw bytes.
    public static let aesKeyFile = "aes_firmware_key.bin"
    /// The firmware's key files, in its own tree (`include/application/keys.h` declares, `src/application/keys.cpp`
    /// defines), under `firmware/` in the keys directory: copy that folder over the firmware repository.
    public static let headerFile = "firmware/include/application/keys.h"
    public static let sourceFile = "firmware/src/application/keys.cpp"

    /// Signs firmware images.
    public let privateKey: _RSA.Signing.PrivateKey
    /// The 32-byte AES-256 firmware key.
    public let aesKey: [UInt8]

    /// Verifies firmware signatures (what the device holds).
    public var publicKey: _RSA.Signing.PublicKey { privateKey.publicKey }
    /// ``aesKey`` for CryptoKit.
    public var symmetricKey: SymmetricKey { SymmetricKey(data: aesKey) }
    /// The first 8 bytes of SHA-256 over the public key's DER, in hex: tells key sets apart in logs and errors.
    public var fingerprint: String {
        SHA256.hash(data: publicKey.derRepresentation).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// A key set from existing parts. `aesKey` must be 32 bytes.
    public init(privateKey: _RSA.Signing.PrivateKey, aesKey: [UInt8]) throws(FirmwareError) {
        guard aesKey.count == 32 else { throw .keys("the AES firmware key must be 32 bytes, not \(aesKey.count)") }
        guard privateKey.keySizeInBits == 2048 else {
            throw .keys("the firmware verifies RSA-2048 signatures; this key has \(privateKey.keySizeInBits) bits")
        }
        self.privateKey = privateKey
        self.aesKey = aesKey
    }

    /// A new random RSA-2048 key pair and AES-256 key.
    public static func generate() throws -> FirmwareKeys {
        var generator = SystemRandomNumberGenerator()
        return try FirmwareKeys(
            privateKey: _RSA.Signing.PrivateKey(keySize: .bits2048),
            aesKey: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        )
    }

    /// True if any key file exists in `directory`.
    public static func anyExist(in directory: String) -> Bool {
        [privateKeyFile, publicKeyFile, aesKeyFile].contains {
            FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0))
        }
    }

    /// Loads the key set from `directory`. The public key file, when present, must match the private key.
    public init(directory: String) throws(FirmwareError) {
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        guard let pemData = FileManager.default.contents(atPath: path(Self.privateKeyFile)),
            let pem = String(data: pemData, encoding: .utf8)
        else {
            throw .keys("cannot read \(path(Self.privateKeyFile))")
        }
        let privateKey: _RSA.Signing.PrivateKey
        do {
            privateKey = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw .keys("\(path(Self.privateKeyFile)) is not an RSA private key in PEM (\(error))")
        }
        guard let aes = FileManager.default.contents(atPath: path(Self.aesKeyFile)) else {
            throw .keys("cannot read \(path(Self.aesKeyFile))")
        }
        try self.init(privateKey: privateKey, aesKey: Array(aes))
        if let publicData = FileManager.default.contents(atPath: path(Self.publicKeyFile)) {
            guard let text = String(data: publicData, encoding: .utf8),
                let stored = try? _RSA.Signing.PublicKey(pemRepresentation: text)
            else {
                throw .keys("\(path(Self.publicKeyFile)) is not an RSA public key in PEM")
            }
            guard stored.derRepresentation == publicKey.derRepresentation else {
                throw .keys("\(path(Self.publicKeyFile)) does not belong to \(path(Self.privateKeyFile))")
            }
        }
    }

    /// Moves the existing key files of `directory` (and the firmware key sources) into `archive/<UTC time>/` below it,
    /// never deleting them: images prepared with them, and devices built with them, still need them.
    /// - Returns: the archive directory, or `nil` when there was nothing to archive.
    public static func archive(in directory: String, now: Date = Date()) throws(FirmwareError) -> String? {
        let manager = FileManager.default
        let names = [privateKeyFile, publicKeyFile, aesKeyFile, headerFile, sourceFile].filter {
            manager.fileExists(atPath: (directory as NSString).appendingPathComponent($0))
        }
        guard !names.isEmpty else { return nil }
        let archive = (directory as NSString).appendingPathComponent("archive/\(EpochTime.compactStamp(now))")
        do {
            for name in names {
                let target = (archive as NSString).appendingPathComponent(name)
                try manager.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try manager.moveItem(atPath: (directory as NSString).appendingPathComponent(name), toPath: target)
            }
        } catch {
            throw .io("cannot archive the keys of \(directory) into \(archive): \(error.localizedDescription)")
        }
        return archive
    }

    /// Writes the key files and the C header into `directory` (created if needed), each with mode 0600.
    /// Refuses to replace existing key files unless `overwrite` is set.
    /// - Returns: the paths written.
    @discardableResult
    public func write(to directory: String, overwrite: Bool = false, hmacPSK: String? = nil) throws(FirmwareError) -> [String] {
        if !overwrite, Self.anyExist(in: directory) {
            throw .keys("keys already exist in \(directory); pass --force to replace them (devices in the field keep trusting the old ones)")
        }
        let manager = FileManager.default
        do {
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .io("cannot create \(directory): \(error.localizedDescription)")
        }
        let files: [(String, Data)] = [
            (Self.privateKeyFile, Data(privateKey.pkcs8PEMRepresentation.utf8) + Data("\n".utf8)),
            (Self.publicKeyFile, Data(publicKey.pemRepresentation.utf8) + Data("\n".utf8)),
            (Self.aesKeyFile, Data(aesKey)),
            (Self.headerFile, Data(Self.cHeader.utf8)),
            (Self.sourceFile, Data(cSource(hmacPSK: hmacPSK).utf8)),
        ]
        var written: [String] = []
        for (name, data) in files {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                try manager.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            } catch {
                throw .io("cannot create the directory of \(path): \(error.localizedDescription)")
            }
            try FirmwareDirectory.writeAtomically(data, to: path, permissions: 0o600)
            written.append(path)
        }
        return written
    }

    /// The firmware's `include/application/keys.h`: declarations only, so that every translation unit may include it
    /// (the original single header defined the keys in the header, which links in no placement).
    public static let cHeader = """
        // EcoWatt FOTA keys, generated by `ecowatt keys generate`: declarations (the definitions are in
        // src/application/keys.cpp).
        #ifndef KEYS_H
        #define KEYS_H

        #include <stdint.h>

        #define RSA_KEY_SIZE 2048
        #define AES_KEY_SIZE 256
        #define HMAC_PSK_SIZE 64

        extern const char* SERVER_PUBLIC_KEY;
        extern const uint8_t AES_FIRMWARE_KEY[32];
        extern const char* HMAC_PSK;

        #endif  // KEYS_H

        """

    /// The firmware's `src/application/keys.cpp`: the public key the device verifies images with, the AES key it
    /// decrypts them with (an `extern const` array, so it keeps external linkage in C++), and `HMAC_PSK` (64 hex
    /// characters, only used by the firmware's dead per-chunk HMAC code; uploads are signed with `PSK_HMAC` in
    /// security.cpp, see `ecowatt keys fleet-key`).
    public func cSource(hmacPSK: String? = nil) -> String {
        let psk = hmacPSK ?? HexCoding.encode((0..<32).map { _ in UInt8.random(in: 0...255) })
        let pemLines = publicKey.pemRepresentation.split(separator: "\n").map { "    \"\($0)\\n\"" }
        let aesBytes = stride(from: 0, to: 32, by: 8).map { row in
            "    " + aesKey[row..<row + 8].map { String(format: "0x%02x", $0) }.joined(separator: ", ")
        }
        return """
            // EcoWatt FOTA keys, generated by `ecowatt keys generate`. Secret: do not commit.
            // The server signs firmware with the matching private key (keys/\(Self.privateKeyFile)) and encrypts it with
            // AES_FIRMWARE_KEY (keys/\(Self.aesKeyFile)).
            #include "application/keys.h"

            const char* SERVER_PUBLIC_KEY =
            \(pemLines.joined(separator: "\n"));

            extern const uint8_t AES_FIRMWARE_KEY[32] = {
            \(aesBytes.joined(separator: ",\n"))
            };

            const char* HMAC_PSK = "\(psk)";

            """
    }
}
