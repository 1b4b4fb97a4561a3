import EcoWattProtocol
import FirmwareImage
import Foundation
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

/// The prepared images of the firmware directory, loaded on first use and kept in memory.
public final class FirmwareCatalog: Sendable {
    public let directory: FirmwareDirectory
    let keyRing: FirmwareKeyRing
    private let loaded = Mutex<[String: ServableFirmware]>([:])

    init(directory: FirmwareDirectory, keyRing: FirmwareKeyRing) {
        self.directory = directory
        self.keyRing = keyRing
        // Whether an image verifies depends on the keys: check again with the new ones.
        keyRing.onChange { [weak self] in self?.loaded.withLock { $0 = [:] } }
    }

    /// The image of `version`, read from disk on first use (so images prepared with the CLI while the server runs are
    /// found); `nil` when there is none.
    public func firmware(_ version: String) throws(FirmwareError) -> ServableFirmware? {
        if let cached = loaded.withLock({ $0[version] }) { return cached }
        guard directory.contains(version) else { return nil }
        let servable = ServableFirmware(try directory.load(version), keys: keyRing.keys)
        return loaded.withLock { cache in
            if let raced = cache[version] { return raced }
            cache[version] = servable
            return servable
        }
    }

    /// Stores a newly prepared image and serves it from memory.
    func add(_ firmware: PreparedFirmware) throws(FirmwareError) -> ServableFirmware {
        try directory.save(firmware)
        let servable = ServableFirmware(firmware, keys: keyRing.keys)
        loaded.withLock { $0[firmware.manifest.version] = servable }
        return servable
    }

    /// Removes every file of `version` and forgets it.
    func delete(_ version: String) throws(FirmwareError) -> [String] {
        loaded.withLock { _ = $0.removeValue(forKey: version) }
        return try directory.delete(version)
    }
}
