import ArgumentParser
import EcoWattAPI
import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import FirmwareImage
import Foundation
import OpenAPIRuntime

/// `ecowatt keys …`: the FOTA key set and the fleet (upload) key.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "FOTA keys (RSA-2048 signing pair, AES-256 firmware key) and the fleet upload key.",
        subcommands: [Generate.self, FleetKeyCommand.self]
    )

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate server_private_key.pem, server_public_key.pem, aes_firmware_key.bin (mode 0600) and the firmware's key files.",
            discussion: """
                firmware/include/application/keys.h and firmware/src/application/keys.cpp go into the firmware tree at
                the same paths (copy keys/firmware/ over the firmware repository): devices then accept only images
                signed with this private key and encrypted with this AES key.

                Existing keys are replaced only with --force, and while prepared images or devices exist only with
                --force --rotate: every device in the field keeps trusting the keys it was built with and rejects
                images prepared with new ones. Replaced keys are moved to archive/<time>/ in the keys directory, never
                deleted. A running server picks up the new keys on SIGHUP (systemctl reload ecowatt).
                """
        )
        @Option(help: "Keys directory (env ECOWATT_KEYS_DIR, default ./keys).") var keysDir: String?
        @Option(help: "Firmware directory checked for prepared images (env ECOWATT_FIRMWARE_DIR, default ./firmware).")
        var firmwareDir: String?
        @Option(help: "Data directory checked for registered devices (env ECOWATT_DATA_DIR, default ./data).") var dataDir: String?
        @Flag(help: "Replace existing keys (archived first).") var force = false
        @Flag(help: "With --force: replace them even though images were prepared or devices registered with them.")
        var rotate = false

        func run() throws {
            let environment = ProcessInfo.processInfo.environment
            let directory = keysDir ?? environment["ECOWATT_KEYS_DIR"] ?? "./keys"
            if FirmwareKeys.anyExist(in: directory) {
                guard force else {
                    throw ValidationError(
                        "keys already exist in \(directory); pass --force to replace them (devices in the field keep trusting the old ones)"
                    )
                }
                let firmware = FirmwareDirectory(path: firmwareDir ?? environment["ECOWATT_FIRMWARE_DIR"] ?? "./firmware")
                let images = firmware.versions()
                let database = DatabaseCommand.databasePath(dataDir).file
                let devices = try EcoWattDatabase.admittedDeviceCount(path: database) ?? 0
                if !rotate, !images.isEmpty || devices > 0 {
                    throw ValidationError(
                        "refusing to replace the FOTA keys: \(images.count) prepared image(s) and \(devices) registered device(s) "
                            + "use them, and devices built with them would reject every image prepared with new keys. "
                            + "If that is what you want (a compromised key, new hardware), add --rotate."
                    )
                }
                if let archive = try FirmwareKeys.archive(in: directory) { print("archived the old keys in \(archive)") }
                if !images.isEmpty || devices > 0 {
                    print(
                        "rotated: the \(devices) registered device(s) accept only images signed with the old keys until they run firmware "
                            + "built with \((directory as NSString).appendingPathComponent("firmware"))/; prepare images again with the new keys, "
                            + "and send the server SIGHUP (systemctl reload ecowatt)"
                    )
                }
            }
            let keys = try FirmwareKeys.generate()
            for path in try keys.write(to: directory, overwrite: true) { print("wrote \(path)") }
            print("copy \((directory as NSString).appendingPathComponent("firmware"))/ over the firmware repository (same paths)")
        }
    }

    struct FleetKeyCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fleet-key",
            abstract: "Generate a private fleet key: keys/fleet_key (hex, 0600) and its definition for the firmware's security.cpp.",
            discussion: """
                Uploads are signed with SecurityLayer::PSK_HMAC, compiled into security.cpp: a device uses the new key
                only once it runs firmware built with it, and until then the server refuses its uploads (give such a
                device the old key as its own with `ecowatt device set-key`). Start the server with
                ECOWATT_FLEET_KEY=$(cat keys/fleet_key).
                """
        )
        @Option(help: "Keys directory (env ECOWATT_KEYS_DIR, default ./keys).") var keysDir: String?
        @Flag(help: "Replace an existing fleet key.") var force = false

        func run() throws {
            let directory = keysDir ?? ProcessInfo.processInfo.environment["ECOWATT_KEYS_DIR"] ?? "./keys"
            let keyPath = (directory as NSString).appendingPathComponent("fleet_key")
            guard force || !FileManager.default.fileExists(atPath: keyPath) else {
                throw ValidationError("\(keyPath) exists; pass --force to replace it (devices built with it would be locked out)")
            }
            var generator = SystemRandomNumberGenerator()
            let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let snippetPath = (directory as NSString).appendingPathComponent("firmware/security_PSK_HMAC.txt")
            try FileManager.default.createDirectory(
                atPath: (snippetPath as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try FirmwareDirectory.writeAtomically(Data((HexCoding.encode(key) + "\n").utf8), to: keyPath, permissions: 0o600)
            try FirmwareDirectory.writeAtomically(Data(FleetKey.firmwareDefinition(key).utf8), to: snippetPath, permissions: 0o600)
            print("wrote \(keyPath)")
            print("wrote \(snippetPath): put it into the firmware's src/application/security.cpp and build new firmware")
            print("start the server with ECOWATT_FLEET_KEY=$(cat \(keyPath))")
        }
    }
}

/// `ecowatt firmware …`: prepare images locally, deploy and watch them through a running server.
struct FirmwareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firmware",
        abstract: "Prepare firmware images, deploy them, and watch OTA sessions.",
        subcommands: [Prepare.self, List.self, Upload.self, Deploy.self, Status.self]
    )

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign, encrypt and chunk an ESP32 image into the firmware directory.",
            discussion: """
                Writes firmware/firmware_<version>_encrypted.bin and firmware/firmware_<version>_manifest.json. The
                signature is RSASSA-PKCS1-v1_5 with SHA-256 over the plaintext, which the field firmware verifies; PSS
                is only for future firmware. A running server serves the new version without a restart.
                """
        )
        @Argument(help: "The plaintext application image (.bin, first byte 0xE9).") var file: String
        @Option(help: "Version: 1-64 characters of A-Z a-z 0-9 . _ -. Must equal the image's compiled-in FIRMWARE_VERSION.")
        var version: String
        @Option(help: "Release notes stored in the manifest.") var notes: String?
        @Option(help: "Signature scheme: pkcs1v15 (field firmware) or pss.") var signature = "pkcs1v15"
        @Option(help: "Keys directory (env ECOWATT_KEYS_DIR, default ./keys).") var keysDir: String?
        @Option(help: "Firmware directory (env ECOWATT_FIRMWARE_DIR, default ./firmware).") var firmwareDir: String?
        @Flag(help: "Replace an existing prepared version.") var force = false

        func validate() throws {
            guard FirmwareVersion.isValid(version) else { throw ValidationError(FirmwareError.invalidVersion(version).description) }
            guard SignatureScheme(rawValue: signature) != nil else { throw ValidationError("--signature must be pkcs1v15 or pss") }
        }

        func run() throws {
            let environment = ProcessInfo.processInfo.environment
            let keys = try FirmwareKeys(directory: keysDir ?? environment["ECOWATT_KEYS_DIR"] ?? "./keys")
            let directory = FirmwareDirectory(path: firmwareDir ?? environment["ECOWATT_FIRMWARE_DIR"] ?? "./firmware")
            if !force, directory.contains(version) { throw FirmwareError.versionExists(version) }
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            let bar = ProgressBar(label: "encrypting", enabled: data.count >= 256 * 1024)
            let prepared = try FirmwarePreparer.prepare(
                image: Array(data),
                version: version,
                description: notes,
                keys: keys,
                scheme: SignatureScheme(rawValue: signature)!,
                progress: bar.update
            )
            bar.finish()
            try directory.save(prepared, overwrite: force)
            let manifest = prepared.manifest
            print(
                "prepared \(version): \(manifest.originalSize) bytes → \(manifest.encryptedSize) encrypted, \(manifest.totalChunks) chunks of \(manifest.chunkSize)"
            )
            print("sha256 \(manifest.sha256Hash), signature \(manifest.signatureScheme.rawValue)")
            print("wrote \(directory.encryptedPath(version))")
            print("wrote \(directory.manifestPath(version))")
            if manifest.encryptedSize > FirmwareManifest.defaultPartitionBytes {
                print("warning: larger than the default OTA partition (\(FirmwareManifest.defaultPartitionBytes) bytes)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the prepared versions in the firmware directory.")
        @Option(help: "Firmware directory (env ECOWATT_FIRMWARE_DIR, default ./firmware).") var firmwareDir: String?

        func run() throws {
            let directory = FirmwareDirectory(path: firmwareDir ?? ProcessInfo.processInfo.environment["ECOWATT_FIRMWARE_DIR"] ?? "./firmware")
            for version in directory.versions() {
                do {
                    let manifest = try FirmwareManifest(bytes: Array(FileManager.default.contents(atPath: directory.manifestPath(version)) ?? Data()))
                    print(
                        "\(version)\t\(manifest.originalSize) bytes\t\(manifest.totalChunks) chunks\t\(manifest.signatureScheme.rawValue)\t\(manifest.timestamp)"
                    )
                } catch {
                    print("\(version)\tunreadable: \(error)")
                }
            }
        }
    }

    struct Deploy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Offer a prepared version to all devices or to listed ones.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Prepared version.") var version: String
        @Option(name: .customLong("device"), help: "A target device (repeat); all devices when omitted.") var devices: [String] = []
        @Option(help: "Failed attempts per device before the version is no longer offered to it.") var maxAttempts = 5
        @Option(help: "Notes stored with the deployment.") var notes: String?
        @Flag(help: "Allow target devices the server has never seen (pre-provisioning).") var create = false

        func run() async throws {
            let body = Components.Schemas.DeploymentCreate(
                version: version,
                deviceIds: devices.isEmpty ? nil : devices,
                maxAttempts: maxAttempts,
                notes: notes,
                create: create ? true : nil
            )
            let deployment = try await server.withClient { try await $0.createDeployment(body: .json(body)).created.body.json }
            print(try OutputOptions.json(deployment))
        }
    }

    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a plain ESP32 image to a running server, which signs, encrypts and chunks it with its keys."
        )
        @OptionGroup var server: OperatorOptions
        @Argument(help: "The image (.bin).") var image: String
        @Option(help: "Version, e.g. 1.4.0.") var version: String
        @Option(help: "Release notes.") var description: String?

        func run() async throws {
            guard let bytes = FileManager.default.contents(atPath: image) else { throw ValidationError("cannot read \(image)") }
            FileHandle.standardError.write(Data("uploading \(bytes.count) bytes…\n".utf8))
            let uploaded = try await server.withClient { client in
                try await client.uploadFirmware(
                    query: .init(version: version, description: description),
                    body: .binary(HTTPBody([UInt8](bytes)))
                ).created.body.json
            }
            for warning in uploaded.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            print(try OutputOptions.json(uploaded.manifest))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a device's latest OTA session and its progress.")
        @OptionGroup var server: OperatorOptions
        @Argument(help: "Device id.") var deviceID: String

        func run() async throws {
            let ota = try await server.withClient { try await $0.getDeviceOTA(path: .init(deviceId: deviceID)).ok.body.json }
            guard let session = ota.session else {
                print("\(deviceID): no OTA session")
                return
            }
            print(
                "\(deviceID): \(session.version) phase \(session.phase) chunks \(session.chunksServed)/\(session.totalChunks) outcome \(session.outcome?.rawValue ?? "active")"
            )
            for event in ota.events {
                print("  \(event.receivedAt.iso)  \(event.phase)  \(event.progress.map { "\($0)%" } ?? "")  \(event.message ?? "")")
            }
        }
    }
}

/// A one-line progress bar on standard error.
final class ProgressBar: @unchecked Sendable {
    let label: String
    let enabled: Bool
    private var lastPercent = -1

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled
    }

    func update(_ done: Int, _ total: Int) {
        guard enabled, total > 0 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent else { return }
        lastPercent = percent
        let filled = percent * 30 / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: 30 - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(percent)% \(done)/\(total) bytes".utf8))
    }

    func finish() {
        if enabled, lastPercent >= 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
