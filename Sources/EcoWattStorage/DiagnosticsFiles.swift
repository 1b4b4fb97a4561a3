import EcoWattProtocol
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Diagnostics JSONL files (spec §9.3), the embedded backend's ``DiagnosticsStore``: `{dir}/{id}_diagnostics.jsonl`,
/// with size-based rotation (`{id}_diagnostics.1.jsonl` is the newest rotated file) and a retention limit. One
/// ``DiagnosticsFile`` actor per device serializes appends and rotation, and each line is written with a single
/// `write(2)` on an `O_APPEND` descriptor, so lines never interleave or tear.
///
/// Disk use is bounded twice: per device by rotation (`maxFileBytes` × (`retainedFiles` + 1)), and across all devices
/// by `totalBytes`: past it, the oldest files (by modification time) are deleted until a tenth of the budget is free.
public final class DiagnosticsFiles: DiagnosticsStore {
    public let directory: String
    public let limits: DiagnosticsLimits
    private let files = Mutex<[String: DiagnosticsFile]>([:])
    /// Devices with files, and the bytes on disk (exact after each scan, counted up by appends in between).
    private let ledger: Mutex<(devices: Set<String>, bytes: Int)>
    /// Files deleted to stay within `totalBytes`.
    private let dropped = Mutex(0)

    public init(directory: String, limits: DiagnosticsLimits) {
        self.directory = directory
        self.limits = limits
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
    public static func deviceID(fileName name: String, anyGeneration: Bool = false) -> String? {
        guard name.hasSuffix(".jsonl"), let range = name.range(of: "_diagnostics", options: .backwards) else { return nil }
        let generation = name[range.upperBound...].dropLast(".jsonl".count)
        guard generation.isEmpty || (anyGeneration && generation.hasPrefix(".") && Int(generation.dropFirst()) != nil) else {
            return nil
        }
        let id = String(name[..<range.lowerBound])
        return SafeIdentifier.isValid(id) ? id : nil
    }

    /// `generation` 0 is the current file, 1… the rotated ones (1 newest).
    public func path(_ deviceID: String, generation: Int = 0) -> String {
        let name = generation == 0 ? "\(deviceID)_diagnostics.jsonl" : "\(deviceID)_diagnostics.\(generation).jsonl"
        return (directory as NSString).appendingPathComponent(name)
    }

    public func diagnosticsDevices() async throws -> [String] {
        ledger.withLock { $0.devices.sorted() }
    }

    public func diagnosticsUsage() async throws -> DiagnosticsUsage {
        DiagnosticsUsage(bytes: ledger.withLock { $0.bytes }, dropped: dropped.withLock { $0 })
    }

    public func appendDiagnostics(deviceID: String, line: [UInt8], receivedAt: String) async throws {
        let overBudget = ledger.withLock { ledger in
            ledger.devices.insert(deviceID)
            ledger.bytes += line.count
            return ledger.bytes > limits.totalBytes
        }
        if overBudget { await enforceBudget(keeping: deviceID, adding: line.count) }
        try await file(deviceID).append(line)
    }

    /// Deletes the oldest files until a tenth of the budget is free (never the current file of `keeping`, about to
    /// get `adding` bytes more).
    func enforceBudget(keeping deviceID: String, adding: Int) async {
        let scan = Self.scan(directory).sorted { $0.modified < $1.modified }
        var bytes = scan.reduce(0) { $0 + $1.bytes }
        var removed = Set<String>()
        let current = (path(deviceID) as NSString).lastPathComponent
        for file in scan where bytes > limits.totalBytes - limits.totalBytes / 10 && file.name != current {
            guard (try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(file.name))) != nil
            else { continue }
            bytes -= file.bytes
            removed.insert(file.name)
        }
        let remaining = scan.filter { !removed.contains($0.name) }
        let devices = Set(remaining.compactMap { Self.deviceID(fileName: $0.name, anyGeneration: true) }).union([deviceID])
        ledger.withLock { $0 = (devices, bytes + adding) }
        dropped.withLock { $0 += removed.count }
    }

    private func file(_ deviceID: String) -> DiagnosticsFile {
        files.withLock { files in
            if let file = files[deviceID] { return file }
            let file = DiagnosticsFile(store: self, deviceID: deviceID)
            files[deviceID] = file
            return file
        }
    }

    public func diagnostics(deviceID: String, limit: Int) async throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        for generation in 0...limits.retainedFiles where result.count < limit {
            guard let data = FileManager.default.contents(atPath: path(deviceID, generation: generation)) else { continue }
            for line in Array(data).split(separator: UInt8(ascii: "\n")).reversed() where result.count < limit {
                result.append(Array(line))
            }
        }
        return result
    }

    public func diagnosticsSummary(deviceID: String) async throws -> DiagnosticsSummary {
        var summary = DiagnosticsSummary()
        var newest: ArraySlice<UInt8>?
        for generation in 0...limits.retainedFiles {
            guard let data = FileManager.default.contents(atPath: path(deviceID, generation: generation)) else { continue }
            summary.files += 1
            summary.bytes += data.count
            summary.entries += data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
            // The lowest generation with a line holds the newest entry, its last line (read here, not again).
            if newest == nil { newest = Array(data).split(separator: UInt8(ascii: "\n")).last }
        }
        if let newest, let value = try? JSONParser.parse(Array(newest)) {
            summary.lastReceivedAt = value["received_at"]?.stringValue
        }
        return summary
    }

    public func deleteDiagnostics(deviceID: String) async throws -> Int {
        // Not a writer for an id without files (evictions name ids that never posted any).
        guard ledger.withLock({ $0.devices.contains(deviceID) }) else { return 0 }
        return await file(deviceID).delete()
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
    let store: DiagnosticsFiles
    let deviceID: String

    init(store: DiagnosticsFiles, deviceID: String) {
        self.store = store
        self.deviceID = deviceID
    }

    /// Appends one whole line, rotating first when the file would exceed the size limit.
    func append(_ line: [UInt8]) throws(DiagnosticsStoreError) {
        let path = store.path(deviceID)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        if size > 0, size + line.count > store.limits.maxFileBytes { try rotate() }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .unwritable("cannot open the diagnostics file") }
        defer { close(fd) }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count else {
            // A short write (disk full): cut the file back so no torn line stays behind.
            if written > 0 { ftruncate(fd, off_t(size)) }
            throw .unwritable("diagnostics could not be written (disk full?)")
        }
    }

    /// current → .1 → .2 …; the oldest beyond the retention limit is removed.
    private func rotate() throws(DiagnosticsStoreError) {
        let manager = FileManager.default
        let retained = store.limits.retainedFiles
        let oldest = store.path(deviceID, generation: retained)
        if let size = (try? manager.attributesOfItem(atPath: oldest))?[.size] as? Int, (try? manager.removeItem(atPath: oldest)) != nil {
            store.released(size)
        }
        if retained > 0 {
            for generation in stride(from: retained - 1, through: 0, by: -1) {
                let from = store.path(deviceID, generation: generation)
                guard manager.fileExists(atPath: from) else { continue }
                do {
                    try manager.moveItem(atPath: from, toPath: store.path(deviceID, generation: generation + 1))
                } catch {
                    throw .unwritable("cannot rotate the diagnostics files: \(error.localizedDescription)")
                }
            }
        } else {
            let current = store.path(deviceID)
            if let size = (try? manager.attributesOfItem(atPath: current))?[.size] as? Int, (try? manager.removeItem(atPath: current)) != nil {
                store.released(size)
            }
        }
    }

    func delete() -> Int {
        var removed = 0
        var bytes = 0
        for generation in 0...store.limits.retainedFiles {
            let path = store.path(deviceID, generation: generation)
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            if (try? FileManager.default.removeItem(atPath: path)) != nil {
                removed += 1
                bytes += size
            }
        }
        store.forget(deviceID, bytes: bytes)
        return removed
    }
}
