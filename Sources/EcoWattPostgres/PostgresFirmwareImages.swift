import EcoWattStorage
import FirmwareImage
import Foundation
import PostgresNIO

/// ``FirmwareImageStore`` on PostgreSQL (issue 22): an image is one row (manifest and ciphertext), so every instance
/// serves every version; each keeps the chunk replies of the images it serves in memory.
public struct PostgresFirmwareImages: FirmwareImageStore {
    public let database: EcoWattPostgresDatabase

    public init(database: EcoWattPostgresDatabase) {
        self.database = database
    }

    public func firmwareVersions() async throws -> [String] {
        try await database.rows("SELECT version FROM firmware_images ORDER BY created_at_ms, version").map { try $0.value("version") }
    }

    public func firmwareImage(_ version: String) async throws -> PreparedFirmware? {
        guard FirmwareVersion.isValid(version),
            let row = try await database.rows("SELECT manifest, ciphertext FROM firmware_images WHERE version = \(version)").first
        else { return nil }
        let manifest: ByteBuffer = try row.value("manifest")
        let ciphertext: ByteBuffer = try row.value("ciphertext")
        return try PreparedFirmware(stored: Array(buffer: manifest), ciphertext: Array(buffer: ciphertext), version: version)
    }

    public func addFirmwareImage(_ firmware: PreparedFirmware) async throws {
        let version = firmware.manifest.version
        let manifest = ByteBuffer(bytes: firmware.manifestBytes)
        let ciphertext = ByteBuffer(bytes: firmware.ciphertext)
        let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
        let added = try await database.rows(
            """
            INSERT INTO firmware_images (version, manifest, ciphertext, created_at_ms)
            VALUES (\(version), \(manifest), \(ciphertext), \(nowMs)) ON CONFLICT (version) DO NOTHING RETURNING version
            """
        )
        guard !added.isEmpty else { throw FirmwareError.versionExists(version) }
    }

    public func deleteFirmwareImage(_ version: String) async throws -> [String] {
        guard !(try await database.rows("DELETE FROM firmware_images WHERE version = \(version) RETURNING version").isEmpty) else {
            throw FirmwareError.notFound(version)
        }
        return ["firmware_images/\(version)"]
    }
}
