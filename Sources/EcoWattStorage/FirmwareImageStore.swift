import FirmwareImage

/// Prepared firmware images (issue 22): files in `firmware_dir` on the embedded backend (``FirmwareDirectory``), rows
/// in PostgreSQL when several instances share a database, so that every instance serves every image. Each instance
/// keeps the images it serves in memory with every chunk reply serialized (the server's `FirmwareCatalog`): a store
/// is read once per version and instance, never per chunk.
public protocol FirmwareImageStore: Sendable {
    /// The stored versions, oldest first.
    func firmwareVersions() async throws -> [String]
    /// The image of `version`, checked against its manifest; `nil` when there is none.
    func firmwareImage(_ version: String) async throws -> PreparedFirmware?
    /// Stores an image; throws ``FirmwareError/versionExists(_:)`` when the version is stored already.
    func addFirmwareImage(_ firmware: PreparedFirmware) async throws
    /// Removes `version` and says what was removed (file names, or the table row); throws
    /// ``FirmwareError/notFound(_:)`` when there was nothing.
    func deleteFirmwareImage(_ version: String) async throws -> [String]
}

extension FirmwareDirectory: FirmwareImageStore {
    public func firmwareVersions() async throws -> [String] {
        versions()
    }

    public func firmwareImage(_ version: String) async throws -> PreparedFirmware? {
        guard contains(version) else { return nil }
        return try load(version)
    }

    public func addFirmwareImage(_ firmware: PreparedFirmware) async throws {
        try save(firmware)
    }

    public func deleteFirmwareImage(_ version: String) async throws -> [String] {
        try delete(version)
    }
}
