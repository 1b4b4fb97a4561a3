/// Diagnostics JSONL (spec §9.3) behind the storage seam (issue 22): one line per entry, each a JSON object with
/// `device_id` and `received_at`. Files in `diagnostics_dir` on the embedded backend (``DiagnosticsFiles``), rows in
/// PostgreSQL when several instances share a database. Both bound the bytes per device and in all, dropping the oldest
/// entries first: the route is open to anyone who knows a device id.
public protocol DiagnosticsStore: Sendable {
    /// Appends one entry: a serialized JSON object followed by `\n`, whose `received_at` is `receivedAt`.
    func appendDiagnostics(deviceID: String, line: [UInt8], receivedAt: String) async throws
    /// The newest `limit` entries of a device, newest first, each without its newline.
    func diagnostics(deviceID: String, limit: Int) async throws -> [[UInt8]]
    /// What is stored of one device.
    func diagnosticsSummary(deviceID: String) async throws -> DiagnosticsSummary
    /// Devices with entries, sorted.
    func diagnosticsDevices() async throws -> [String]
    /// Removes every entry of a device; returns how many files (PostgreSQL: 1 when it had entries).
    func deleteDiagnostics(deviceID: String) async throws -> Int
    /// Bytes stored, and how much was dropped to stay within the total budget (files; PostgreSQL: entries).
    func diagnosticsUsage() async throws -> DiagnosticsUsage
}

/// What a ``DiagnosticsStore`` holds of one device.
public struct DiagnosticsSummary: Sendable, Equatable {
    /// Files on disk (the current one and rotated ones); PostgreSQL: 1 when there are entries.
    public var files: Int
    public var bytes: Int
    public var entries: Int
    /// `received_at` of the newest entry.
    public var lastReceivedAt: String?

    public init(files: Int = 0, bytes: Int = 0, entries: Int = 0, lastReceivedAt: String? = nil) {
        self.files = files
        self.bytes = bytes
        self.entries = entries
        self.lastReceivedAt = lastReceivedAt
    }
}

/// Bytes of all diagnostics, and what was dropped to stay within the total budget.
public struct DiagnosticsUsage: Sendable, Equatable {
    public var bytes: Int
    public var dropped: Int

    public init(bytes: Int, dropped: Int) {
        self.bytes = bytes
        self.dropped = dropped
    }
}

/// The budgets of a ``DiagnosticsStore``: per device `maxFileBytes` × (`retainedFiles` + 1) (the files' rotation),
/// and `totalBytes` in all (past it the oldest entries go until a tenth is free).
public struct DiagnosticsLimits: Sendable, Equatable {
    public var maxFileBytes: Int
    public var retainedFiles: Int
    public var totalBytes: Int

    public init(maxFileBytes: Int, retainedFiles: Int, totalBytes: Int = 1 << 30) {
        self.maxFileBytes = maxFileBytes
        self.retainedFiles = retainedFiles
        self.totalBytes = totalBytes
    }

    /// Most bytes one device keeps.
    public var perDeviceBytes: Int { maxFileBytes * (retainedFiles + 1) }
}

/// Why an entry could not be stored.
public enum DiagnosticsStoreError: Error, Equatable {
    /// The file could not be opened or the line not written whole (a full disk).
    case unwritable(String)
}
