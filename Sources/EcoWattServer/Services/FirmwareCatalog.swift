import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Foundation
import Logging
import NIOCore
import Synchronization

/// A prepared image held in memory with every chunk reply already serialized, so a chunk request costs a dictionary
/// lookup and no disk read, base64 or JSON work.
public final class ServableFirmware: Sendable {
    public let firmware: PreparedFirmware
    /// `{"success":true,"chunk_data":"<base64>","chunk_size":<n>}` per chunk (spec §7.3; fits the 3072-byte pool).
    let chunkReplies: [ByteBuffer]
    /// Whether the signature verifies with the server's keys (`nil` without keys).
    public let signatureVerified: Bool?

    init(_ firmware: PreparedFirmware, keys: FirmwareKeys?) {
        self.firmware = firmware
        self.chunkReplies = (0..<firmware.manifest.totalChunks).map { index in
            let chunk = firmware.chunk(index)
            return ByteBuffer(string: Self.chunkReply(Data(chunk).base64EncodedString(), size: chunk.count))
        }
        self.signatureVerified = keys.map { firmware.signatureVerifies(keys: $0) }
    }

    static func chunkReply(_ base64: String, size: Int) -> String {
        JSONValue.object([("success", true), ("chunk_data", .string(base64)), ("chunk_size", .int(Int64(size)))]).serialized
    }

    public var manifest: FirmwareManifest { firmware.manifest }
}

/// The prepared images of the backend's ``FirmwareImageStore`` (`firmware_dir`, or PostgreSQL), each read once on
/// first use and kept in memory with its chunk replies serialized: this instance's chunk cache. On PostgreSQL the other
/// instances announce what they add or delete, and the cache forgets it (``forget(_:)``).
public final class FirmwareCatalog: Sendable {
    let store: any FirmwareImageStore
    let keyRing: FirmwareKeyRing
    private let loaded = Mutex<[String: ServableFirmware]>([:])
    /// The stored versions, kept when every change of them is announced (PostgreSQL): the open `/ota/status` asks
    /// whether there are any, and must not cost a query each time. Files are listed each time (the CLI prepares
    /// images into `firmware_dir` while the server runs).
    private let listed = Mutex<(versions: [String]?, generation: Int)>((nil, 0))
    private let keepsVersions: Bool

    init(store: any FirmwareImageStore, keyRing: FirmwareKeyRing, keepsVersions: Bool = false) {
        self.store = store
        self.keyRing = keyRing
        self.keepsVersions = keepsVersions
        // Whether an image verifies depends on the keys: check again with the new ones.
        keyRing.onChange { [weak self] in self?.loaded.withLock { $0 = [:] } }
    }

    /// The image of `version` if this instance holds it already (a chunk request's path: no suspension).
    func cached(_ version: String) -> ServableFirmware? {
        loaded.withLock { $0[version] }
    }

    /// The image of `version`, read from the store on first use (so images prepared with the CLI into `firmware_dir`
    /// while the server runs are found on SQLite, and images another instance stored on PostgreSQL); `nil` when there
    /// is none.
    public func firmware(_ version: String) async throws -> ServableFirmware? {
        if let cached = cached(version) { return cached }
        guard FirmwareVersion.isValid(version), let prepared = try await store.firmwareImage(version) else { return nil }
        let servable = ServableFirmware(prepared, keys: keyRing.keys)
        return loaded.withLock { cache in
            if let raced = cache[version] { return raced }
            cache[version] = servable
            return servable
        }
    }

    /// The stored versions, oldest first.
    public func versions() async throws -> [String] {
        let (kept, generation) = listed.withLock { ($0.versions, $0.generation) }
        if let kept { return kept }
        let versions = try await store.firmwareVersions()
        // Not kept when a change came in meanwhile (the list read may predate it).
        if keepsVersions { listed.withLock { if $0.generation == generation { $0.versions = versions } } }
        return versions
    }

    /// Stores a newly prepared image and serves it from memory.
    func add(_ firmware: PreparedFirmware) async throws -> ServableFirmware {
        try await store.addFirmwareImage(firmware)
        changedVersions()
        let servable = ServableFirmware(firmware, keys: keyRing.keys)
        loaded.withLock { $0[firmware.manifest.version] = servable }
        return servable
    }

    /// Removes `version` from the store and forgets it; what was removed.
    func delete(_ version: String) async throws -> [String] {
        forget(version)
        defer { changedVersions() }
        return try await store.deleteFirmwareImage(version)
    }

    /// The version list changed: read it again next time.
    private func changedVersions() {
        listed.withLock {
            $0.versions = nil
            $0.generation += 1
        }
    }

    /// Forgets `version` (another instance deleted it); every version when `nil`.
    func forget(_ version: String?) {
        changedVersions()
        loaded.withLock { cache in
            if let version { cache[version] = nil } else { cache = [:] }
        }
    }

    /// Copies the images of `directory` the store lacks into it (PostgreSQL: images prepared with the CLI into
    /// `firmware_dir`, or kept there by an embedded server moving to a shared database). Run at start.
    func importImages(from directory: FirmwareDirectory, logger: Logger) async throws {
        let stored = Set(try await store.firmwareVersions())
        for version in directory.versions() where !stored.contains(version) {
            do {
                try await store.addFirmwareImage(try directory.load(version))
                logger.notice("firmware imported into the database", metadata: ["version": "\(version)", "from": "\(directory.path)"])
            } catch FirmwareError.versionExists {
                // Another instance imported it at the same moment.
            } catch {
                logger.warning("firmware not imported", metadata: ["version": "\(version)", "error": "\(error.logDescription)"])
            }
        }
    }
}
