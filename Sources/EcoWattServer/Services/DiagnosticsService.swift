import EcoWattProtocol
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Diagnostics JSONL (spec §9.3): `{dir}/{id}_diagnostics.jsonl`, one object per line, with size-based rotation
/// (`{id}_diagnostics.1.jsonl` is the newest rotated file) and a retention limit. One ``DiagnosticsFile`` actor per
/// device serializes appends and rotation, and each line is written with a single `write(2)` on an `O_APPEND`
/// descriptor, so lines never interleave or tear. Entries are read back from the files, so they survive restarts.
///
/// The route is unauthenticated, so disk use is bounded twice: per device by rotation (`maxFileBytes` ×
/// (`retainedFiles` + 1)), and across all devices by `totalBytes`: past it, the oldest files (by modification time) are
/// deleted until a tenth of the budget is free. Files of pending devices the registry drops are deleted with them.
public final class DiagnosticsService: Sendable {
    public let directory: String
    let maxFileBytes: Int
    let retainedFiles: Int
    /// Bytes of all diagnostics files together.
    let totalBytes: Int
    private let files = Mutex<[String: DiagnosticsFile]>([:])
    /// Devices with files, and the bytes on disk (exact after each scan, counted up by appends in between).
    private let ledger: Mutex<(devices: Set<String>, bytes: Int)>
    /// Files deleted to stay within `totalBytes`.
    private let dropped = Mutex(0)

    /// Largest accepted diagnostics object.
    public static let maxBodyBytes = 16 * 1024

    public init(directory: String, maxFileBytes: Int, retainedFiles: Int, totalBytes: Int = 1 << 30) {
        self.directory = directory
        self.maxFileBytes = maxFileBytes
        self.retainedFiles = retainedFiles
        self.totalBytes = totalBytes
        let scan = Self.scan(directory)
        ledger = Mutex((Set(scan.compactMap { Self.deviceID(fileName: $0.name, anyGeneration: true) }), scan.reduce(0) { $0 + $1.bytes }))
    }

    /// Every diagnostics file with its size and modification time.
    static func scan(_ directory: String) -> [(name: String, bytes: Int, modified: Date)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            guard deviceID(fileName: name, anyGeneration: true) != nil,
                let attributes = try? FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent(name))
            else { return nil }
            return (name, (attributes[.size] as? Int) ?? 0, (attributes[.modificationDate] as? Date) ?? .distantPast)
        }
    }

    /// The device id of a diagnostics file name (the current file, or with `anyGeneration` a rotated one too).
    static func deviceID(fileName name: String, anyGeneration: Bool = false) -> String? {
        guard name.hasSuffix(".jsonl"), let range = name.range(of: "_diagnostics", options: .backwards) else { return nil }
        let generation = name[range.upperBound...].dropLast(".jsonl".count)
        guard generation.isEmpty || (anyGeneration && generation.hasPrefix(".") && Int(generation.dropFirst()) != nil) else {
            return nil
        }
        let id = String(name[..<range.lowerBound])
        return SafeIdentifier.isValid(id) ? id : nil
    }

    /// `generation` 0 is the current file, 1… the rotated ones (1 newest).
    func path(_ deviceID: String, generation: Int = 0) -> String {
        let name = generation == 0 ? "\(deviceID)_diagnostics.jsonl" : "\(deviceID)_diagnostics.\(generation).jsonl"
        return (directory as NSString).appendingPathComponent(name)
    }

    /// Devices with diagnostics, sorted.
    public var devices: [String] { ledger.withLock { $0.devices.sorted() } }

    /// Bytes on disk (as last counted) and files deleted to stay within the budget.
    public var usage: (bytes: Int, droppedFiles: Int) { (ledger.withLock { $0.bytes }, dropped.withLock { $0 }) }

    /// Appends `object` with `device_id` (forced to the URL id) and the server's `received_at`.
    public func append(deviceID: String, object: JSONValue, receivedAt: String) async throws {
        guard case .object(let members) = object else { throw APIError(.badRequest, "The body must be a JSON object") }
        let line = Array(
            (JSONValue.object(
                members.filter { $0.0 != "device_id" && $0.0 != "received_at" }
                    + [("device_id", .string(deviceID)), ("received_at", .string(receivedAt))]
            ).serialized + "\n").utf8
        )
        let overBudget = ledger.withLock { ledger in
            ledger.devices.insert(deviceID)
            ledger.bytes += line.count
            return ledger.bytes > totalBytes
        }
        if overBudget { await enforceBudget(keeping: deviceID) }
        try await file(deviceID).append(line)
    }

    /// Deletes the oldest files until a tenth of the budget is free (never the current file of `keeping`).
    func enforceBudget(keeping deviceID: String) async {
        let scan = Self.scan(directory).sorted { $0.modified < $1.modified }
        var bytes = scan.reduce(0) { $0 + $1.bytes }
        var removed = Set<String>()
        let current = (path(deviceID) as NSString).lastPathComponent
        for file in scan where bytes > totalBytes - totalBytes / 10 && file.name != current {
            guard (try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(file.name))) != nil
            else { continue }
            bytes -= file.bytes
            removed.insert(file.name)
        }
        let remaining = scan.filter { !removed.contains($0.name) }
        let devices = Set(remaining.compactMap { Self.deviceID(fileName: $0.name, anyGeneration: true) }).union([deviceID])
        ledger.withLock { $0 = (devices, bytes) }
        dropped.withLock { $0 += removed.count }
    }

    /// Pending devices the registry dropped: their files go too.
    public func evicted(_ deviceIDs: [String]) async {
        for deviceID in deviceIDs where SafeIdentifier.isValid(deviceID) && ledger.withLock({ $0.devices.contains(deviceID) }) {
            _ = await delete(deviceID: deviceID)
        }
    }

    private func file(_ deviceID: String) -> DiagnosticsFile {
        files.withLock { files in
            if let file = files[deviceID] { return file }
            let file = DiagnosticsFile(service: self, deviceID: deviceID)
            files[deviceID] = file
            return file
        }
    }

    /// The newest `limit` entries of a device, newest first, across the current and rotated files. Lines that are not
    /// JSON (there should be none) are skipped.
    public func entries(deviceID: String, limit: Int) -> [JSONValue] {
        var result: [JSONValue] = []
        for generation in 0...retainedFiles where result.count < limit {
            guard let data = FileManager.default.contents(atPath: path(deviceID, generation: generation)) else { continue }
            for line in Array(data).split(separator: UInt8(ascii: "\n")).reversed() where result.count < limit {
                if let value = try? JSONParser.parse(Array(line)) { result.append(value) }
            }
        }
        return result
    }

    /// Per device: files, bytes and entries on disk, and the newest entry's `received_at`.
    public func summary(deviceID: String) -> (files: Int, bytes: Int, entries: Int, lastReceivedAt: String?) {
        var files = 0
        var bytes = 0
        var lines = 0
        for generation in 0...retainedFiles {
            guard let data = FileManager.default.contents(atPath: path(deviceID, generation: generation)) else { continue }
            files += 1
            bytes += data.count
            lines += data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        }
        let last = entries(deviceID: deviceID, limit: 1).first?["received_at"]?.stringValue
        return (files, bytes, lines, last)
    }

    /// Removes every diagnostics file of a device; returns how many.
    public func delete(deviceID: String) async -> Int {
        await file(deviceID).delete()
    }

    fileprivate func forget(_ deviceID: String, bytes: Int) {
        ledger.withLock { ledger in
            ledger.devices.remove(deviceID)
            ledger.bytes = max(0, ledger.bytes - bytes)
        }
    }

    /// A rotation removed `bytes` (the oldest retained file).
    fileprivate func released(_ bytes: Int) {
        ledger.withLock { $0.bytes = max(0, $0.bytes - bytes) }
    }
}

/// The single writer of one device's diagnostics files.
actor DiagnosticsFile {
    let service: DiagnosticsService
    let deviceID: String

    init(service: DiagnosticsService, deviceID: String) {
        self.service = service
        self.deviceID = deviceID
    }

    /// Appends one whole line, rotating first when the file would exceed the size limit.
    func append(_ line: [UInt8]) throws {
        let path = service.path(deviceID)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        if size > 0, size + line.count > service.maxFileBytes { try rotate() }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw APIError(.internalServerError, "Cannot open the diagnostics file") }
        defer { close(fd) }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count else {
            // A short write (disk full): cut the file back so no torn line stays behind.
            if written > 0 { ftruncate(fd, off_t(size)) }
            throw APIError(.serviceUnavailable, "Diagnostics could not be written (disk full?)")
        }
    }

    /// current → .1 → .2 …; the oldest beyond the retention limit is removed.
    private func rotate() throws {
        let manager = FileManager.default
        let oldest = service.path(deviceID, generation: service.retainedFiles)
        if let size = (try? manager.attributesOfItem(atPath: oldest))?[.size] as? Int, (try? manager.removeItem(atPath: oldest)) != nil {
            service.released(size)
        }
        if service.retainedFiles > 0 {
            for generation in stride(from: service.retainedFiles - 1, through: 0, by: -1) {
                let from = service.path(deviceID, generation: generation)
                if manager.fileExists(atPath: from) {
                    try manager.moveItem(atPath: from, toPath: service.path(deviceID, generation: generation + 1))
                }
            }
        } else {
            let current = service.path(deviceID)
            if let size = (try? manager.attributesOfItem(atPath: current))?[.size] as? Int, (try? manager.removeItem(atPath: current)) != nil {
                service.released(size)
            }
        }
    }

    func delete() -> Int {
        var removed = 0
        var bytes = 0
        for generation in 0...service.retainedFiles {
            let path = service.path(deviceID, generation: generation)
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            if (try? FileManager.default.removeItem(atPath: path)) != nil {
                removed += 1
                bytes += size
            }
        }
        service.forget(deviceID, bytes: bytes)
        return removed
    }
}
