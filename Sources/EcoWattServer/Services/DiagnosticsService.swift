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
public final class DiagnosticsService: Sendable {
    public let directory: String
    let maxFileBytes: Int
    let retainedFiles: Int
    /// Most distinct devices with diagnostics files (the route is unauthenticated, like the Flask one).
    let maxDevices: Int
    private let files = Mutex<[String: DiagnosticsFile]>([:])
    private let knownDevices: Mutex<Set<String>>

    /// Largest accepted diagnostics object.
    public static let maxBodyBytes = 16 * 1024

    public init(directory: String, maxFileBytes: Int, retainedFiles: Int, maxDevices: Int = 10_000) {
        self.directory = directory
        self.maxFileBytes = maxFileBytes
        self.retainedFiles = retainedFiles
        self.maxDevices = maxDevices
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        knownDevices = Mutex(Set(names.compactMap(Self.deviceID(fileName:))))
    }

    /// The device id of a current diagnostics file name.
    static func deviceID(fileName name: String) -> String? {
        guard name.hasSuffix("_diagnostics.jsonl") else { return nil }
        let id = String(name.dropLast("_diagnostics.jsonl".count))
        return SafeIdentifier.isValid(id) ? id : nil
    }

    /// `generation` 0 is the current file, 1… the rotated ones (1 newest).
    func path(_ deviceID: String, generation: Int = 0) -> String {
        let name = generation == 0 ? "\(deviceID)_diagnostics.jsonl" : "\(deviceID)_diagnostics.\(generation).jsonl"
        return (directory as NSString).appendingPathComponent(name)
    }

    /// Devices with diagnostics, sorted.
    public var devices: [String] { knownDevices.withLock { $0.sorted() } }

    /// Appends `object` with `device_id` (forced to the URL id) and the server's `received_at`.
    public func append(deviceID: String, object: JSONValue, receivedAt: String) async throws {
        guard case .object(let members) = object else { throw APIError(.badRequest, "The body must be a JSON object") }
        let admitted = knownDevices.withLock { known in
            guard known.contains(deviceID) || known.count < maxDevices else { return false }
            known.insert(deviceID)
            return true
        }
        guard admitted else {
            throw APIError(.tooManyRequests, "Diagnostics are already kept for \(maxDevices) devices; delete some first")
        }
        let line =
            JSONValue.object(
                members.filter { $0.0 != "device_id" && $0.0 != "received_at" }
                    + [("device_id", .string(deviceID)), ("received_at", .string(receivedAt))]
            ).serialized + "\n"
        try await file(deviceID).append(Array(line.utf8))
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

    fileprivate func forget(_ deviceID: String) {
        knownDevices.withLock { _ = $0.remove(deviceID) }
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
        try? manager.removeItem(atPath: service.path(deviceID, generation: service.retainedFiles))
        if service.retainedFiles > 0 {
            for generation in stride(from: service.retainedFiles - 1, through: 0, by: -1) {
                let from = service.path(deviceID, generation: generation)
                if manager.fileExists(atPath: from) {
                    try manager.moveItem(atPath: from, toPath: service.path(deviceID, generation: generation + 1))
                }
            }
        } else {
            try? manager.removeItem(atPath: service.path(deviceID))
        }
    }

    func delete() -> Int {
        var removed = 0
        for generation in 0...service.retainedFiles {
            if (try? FileManager.default.removeItem(atPath: service.path(deviceID, generation: generation))) != nil { removed += 1 }
        }
        service.forget(deviceID)
        return removed
    }
}
