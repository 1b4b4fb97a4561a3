import EcoWattPostgres
import EcoWattProtocol
import EcoWattStorage
import EcoWattTestSupport
import FirmwareImage
import Foundation
import Testing

/// The contract of ``FirmwareImageStore`` and ``DiagnosticsStore`` (issue 22): files on the embedded backend
/// (`firmware_dir`, `diagnostics_dir`), rows on PostgreSQL, where what one instance stores every instance reads.
@Suite struct ImagesAndDiagnosticsContractTests {
    typealias Backend = StoreContractTests.Backend

    /// The backends that keep these: files beside SQLite, and PostgreSQL.
    static var backends: [Backend] { Backend.cases.filter { $0 != .memory } }

    /// `instances` pairs of stores on one backend (files: the same directories for each).
    static func with(
        _ backend: Backend,
        instances: Int = 1,
        limits: DiagnosticsLimits = DiagnosticsLimits(maxFileBytes: 1 << 20, retainedFiles: 2),
        _ body: ([(firmware: any FirmwareImageStore, diagnostics: any DiagnosticsStore)]) async throws -> Void
    ) async throws {
        switch backend {
        case .memory, .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("blobs-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let diagnostics = directory.appendingPathComponent("diagnostics").path
            try FileManager.default.createDirectory(atPath: diagnostics, withIntermediateDirectories: true)
            let stores = (
                firmware: FirmwareDirectory(path: directory.appendingPathComponent("firmware").path) as any FirmwareImageStore,
                diagnostics: DiagnosticsFiles(directory: diagnostics, limits: limits) as any DiagnosticsStore
            )
            try await body(Array(repeating: stores, count: instances))
        case .postgres:
            try await PostgresTestDatabase.with(instances: instances) { databases in
                try await body(
                    databases.map { database in
                        (PostgresFirmwareImages(database: database), PostgresDiagnostics(database: database, limits: limits))
                    }
                )
            }
        }
    }

    static let keys: FirmwareKeys = {
        do { return try FirmwareKeys.generate() } catch { fatalError("RSA key generation failed: \(error)") }
    }()

    static func image(_ version: String, bytes: Int) throws -> PreparedFirmware {
        var image = [UInt8](repeating: 0x5A, count: bytes)
        image[0] = 0xE9
        return try FirmwarePreparer.prepare(image: image, version: version, description: "test \(version)", keys: keys)
    }

    @Test(arguments: backends) func anImageStoredByOneInstanceIsReadByAnotherCheckedListedOldestFirstAndDeleted(_ backend: Backend) async throws {
        try await Self.with(backend, instances: 2) { instances in
            let (first, second) = (instances[0].firmware, instances[1].firmware)
            #expect(try await first.firmwareVersions() == [])
            let old = try Self.image("1.0.0", bytes: 5_000)
            let new = try Self.image("1.0.1", bytes: 70_000)
            try await first.addFirmwareImage(old)
            try await Task.sleep(for: .milliseconds(20))  // a later file time or created_at
            try await second.addFirmwareImage(new)
            await #expect(throws: FirmwareError.versionExists("1.0.0")) { try await second.addFirmwareImage(old) }
            #expect(try await first.firmwareVersions() == ["1.0.0", "1.0.1"])
            let read = try #require(try await second.firmwareImage("1.0.0"))
            #expect(read.ciphertext == old.ciphertext && read.manifestBytes == old.manifestBytes)
            #expect(read.signatureVerifies(keys: Self.keys))
            #expect(try await first.firmwareImage("1.0.1")?.ciphertext == new.ciphertext)
            #expect(try await first.firmwareImage("9.9.9") == nil)
            #expect(try await first.firmwareImage("../etc") == nil, "not a version: nothing is looked up")
            #expect(try await second.deleteFirmwareImage("1.0.0").isEmpty == false)
            await #expect(throws: FirmwareError.notFound("1.0.0")) { _ = try await first.deleteFirmwareImage("1.0.0") }
            #expect(try await first.firmwareImage("1.0.0") == nil)
            #expect(try await first.firmwareVersions() == ["1.0.1"])
        }
    }

    static func line(_ deviceID: String, _ sequence: Int, padding: Int = 60) -> [UInt8] {
        Array(
            // `n` has four digits: every line is the same size.
            (JSONValue.object([
                ("n", .int(Int64(1_000 + sequence))), ("pad", .string(String(repeating: "x", count: padding))),
                ("device_id", .string(deviceID)), ("received_at", .string(receivedAt(sequence))),
            ]).serialized + "\n").utf8
        )
    }

    static func receivedAt(_ sequence: Int) -> String {
        "2026-12-06T10:00:\(String(format: "%02d", sequence % 60)).000Z"
    }

    static func sequences(_ lines: [[UInt8]]) -> [Int64] {
        lines.compactMap { try? JSONParser.parse($0)["n"]?.intValue }.map { $0 - 1_000 }
    }

    @Test(arguments: backends) func entriesComeBackNewestFirstAndEachDeviceKeepsItsNewestWithinItsBudget(_ backend: Backend) async throws {
        let limits = DiagnosticsLimits(maxFileBytes: 1_000, retainedFiles: 1, totalBytes: 1 << 20)
        try await Self.with(backend, instances: 2, limits: limits) { instances in
            let (first, second) = (instances[0].diagnostics, instances[1].diagnostics)
            let size = Self.line("D1", 0).count
            for sequence in 0..<60 {
                try await (sequence.isMultiple(of: 2) ? first : second).appendDiagnostics(
                    deviceID: "D1",
                    line: Self.line("D1", sequence),
                    receivedAt: Self.receivedAt(sequence)
                )
            }
            try await first.appendDiagnostics(deviceID: "D2", line: Self.line("D2", 7), receivedAt: Self.receivedAt(7))
            let kept = try await second.diagnostics(deviceID: "D1", limit: 1_000)
            let sequences = Self.sequences(kept)
            #expect(sequences.first == 59, "newest first")
            #expect(sequences == Array((60 - sequences.count)..<60).reversed().map(Int64.init), "the newest, without gaps")
            #expect(kept.count * size <= limits.perDeviceBytes + size, "within the device's budget: \(kept.count) entries")
            #expect(kept.count * size >= limits.maxFileBytes, "at least a file's worth kept: \(kept.count) entries")
            #expect(Self.sequences(try await first.diagnostics(deviceID: "D1", limit: 3)) == [59, 58, 57])
            let summary = try await first.diagnosticsSummary(deviceID: "D1")
            #expect(summary.entries == kept.count && summary.bytes == kept.count * size && summary.files >= 1)
            #expect(summary.lastReceivedAt == "2026-12-06T10:00:59.000Z")
            #expect(try await second.diagnosticsDevices() == ["D1", "D2"])
            #expect(try await second.diagnosticsUsage().bytes == (kept.count + 1) * size)
            #expect(try await second.deleteDiagnostics(deviceID: "D1") >= 1)
            #expect(try await first.deleteDiagnostics(deviceID: "D1") == 0, "nothing left")
            #expect(try await first.diagnostics(deviceID: "D1", limit: 10).isEmpty)
            #expect(try await first.diagnosticsSummary(deviceID: "D1") == DiagnosticsSummary())
            #expect(try await first.diagnosticsDevices() == ["D2"])
            #expect(try await first.diagnosticsUsage().bytes == size)
        }
    }

    @Test(arguments: backends) func pastTheTotalBudgetTheOldestEntriesOfAllDevicesGoFirst(_ backend: Backend) async throws {
        let limits = DiagnosticsLimits(maxFileBytes: 2_000, retainedFiles: 0, totalBytes: 6_000)
        try await Self.with(backend, limits: limits) { instances in
            let store = instances[0].diagnostics
            let size = Self.line("A", 0).count
            // Devices in turn, each a file's worth at most: only the total budget drops anything.
            for device in ["A", "B", "C", "D", "E"] {
                for sequence in 0..<(limits.maxFileBytes / size) {
                    try await store.appendDiagnostics(deviceID: device, line: Self.line(device, sequence), receivedAt: Self.receivedAt(sequence))
                }
                // Files are dropped by modification time: let each device's be later than the last's.
                try await Task.sleep(for: .milliseconds(20))
            }
            let usage = try await store.diagnosticsUsage()
            #expect(usage.bytes <= limits.totalBytes + size, "\(usage)")
            #expect(usage.dropped > 0)
            #expect(try await store.diagnostics(deviceID: "A", limit: 100).isEmpty, "the oldest device's entries went first")
            #expect(try await store.diagnostics(deviceID: "E", limit: 100).count == limits.maxFileBytes / size, "the newest stay whole")
            var stored = 0
            for device in try await store.diagnosticsDevices() { stored += try await store.diagnosticsSummary(deviceID: device).bytes }
            #expect(stored == usage.bytes, "the usage counts what is stored")
        }
    }
}
