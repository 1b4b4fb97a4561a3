import Foundation

/// The prepared images on disk: `firmware_{version}_encrypted.bin` and `firmware_{version}_manifest.json`, the file
/// names of the original server.
public struct FirmwareDirectory: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// Path of a version's ciphertext.
    public func encryptedPath(_ version: String) -> String {
        (path as NSString).appendingPathComponent("firmware_\(version)_encrypted.bin")
    }

    /// Path of a version's manifest.
    public func manifestPath(_ version: String) -> String {
        (path as NSString).appendingPathComponent("firmware_\(version)_manifest.json")
    }

    /// True if a manifest of `version` exists.
    public func contains(_ version: String) -> Bool {
        FirmwareVersion.isValid(version) && FileManager.default.fileExists(atPath: manifestPath(version))
    }

    /// Versions with a manifest file, oldest file first.
    public func versions() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let versions = names.compactMap { name -> String? in
            guard name.hasPrefix("firmware_"), name.hasSuffix("_manifest.json") else { return nil }
            let version = String(name.dropFirst("firmware_".count).dropLast("_manifest.json".count))
            return FirmwareVersion.isValid(version) ? version : nil
        }
        func modified(_ version: String) -> Date {
            ((try? FileManager.default.attributesOfItem(atPath: manifestPath(version)))?[.modificationDate] as? Date)
                ?? .distantPast
        }
        return versions.map { ($0, modified($0)) }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map(\.0)
    }

    /// Reads a version back and checks that the ciphertext matches its manifest.
    public func load(_ version: String) throws(FirmwareError) -> PreparedFirmware {
        try FirmwareVersion.validate(version)
        guard let manifestData = FileManager.default.contents(atPath: manifestPath(version)) else {
            throw .notFound(version)
        }
        guard let ciphertext = FileManager.default.contents(atPath: encryptedPath(version)) else {
            throw .manifest("\(encryptedPath(version)) is missing")
        }
        return try PreparedFirmware(stored: Array(manifestData), ciphertext: Array(ciphertext), version: version)
    }

    /// Stores a prepared image: the ciphertext first, then the manifest, each written to a temporary file and renamed,
    /// so a manifest never exists without its complete image.
    public func save(_ firmware: PreparedFirmware, overwrite: Bool = false) throws(FirmwareError) {
        let version = firmware.manifest.version
        if !overwrite, contains(version) { throw .versionExists(version) }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .io("cannot create \(path): \(error.localizedDescription)")
        }
        try Self.writeAtomically(Data(firmware.ciphertext), to: encryptedPath(version), permissions: 0o644)
        try Self.writeAtomically(Data(firmware.manifestBytes), to: manifestPath(version), permissions: 0o644)
    }

    /// Removes every file of `version` (manifest, ciphertext, and the original server's `firmware_v{version}.bin`).
    /// - Returns: the paths removed.
    @discardableResult
    public func delete(_ version: String) throws(FirmwareError) -> [String] {
        try FirmwareVersion.validate(version)
        let legacy = (path as NSString).appendingPathComponent("firmware_v\(version).bin")
        var removed: [String] = []
        // The manifest goes first: without it the version no longer exists, even if a later removal fails.
        for file in [manifestPath(version), encryptedPath(version), legacy]
        where FileManager.default.fileExists(atPath: file) {
            do {
                try FileManager.default.removeItem(atPath: file)
            } catch {
                throw .io("cannot remove \(file): \(error.localizedDescription)")
            }
            removed.append(file)
        }
        guard !removed.isEmpty else { throw .notFound(version) }
        return removed
    }

    /// Writes `data` to a temporary file with `permissions` and renames it to `path`, so readers never see a partial
    /// file (firmware files, and the key files with 0600).
    public static func writeAtomically(_ data: Data, to path: String, permissions: Int) throws(FirmwareError) {
        let temporary = path + ".tmp-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: permissions])
        else {
            throw .io("cannot write \(temporary)")
        }
        if rename(temporary, path) != 0 {
            try? FileManager.default.removeItem(atPath: temporary)
            throw .io("cannot move \(temporary) to \(path)")
        }
    }
}
