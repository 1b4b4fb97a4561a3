/// Errors of the storage layer.
public enum StoreError: Error, Sendable, Equatable {
    /// The nonce was not greater than the stored one when the transaction ran (a concurrent upload won).
    case nonceNotIncreasing(deviceID: String, nonce: UInt32, stored: UInt32)
    /// The device's state changed since the upload was decoded (``IngestRecord/expectedVersion``): another server
    /// instance committed an upload or a boot signal of the device. Decode again against the stored state.
    case stateChanged(deviceID: String)
    /// The writer is shutting down and accepts no more work.
    case shuttingDown
}

/// How hard a commit is pushed to disk.
public enum Durability: String, Sendable, Codable, CaseIterable {
    /// WAL with `synchronous=NORMAL`: an acknowledged write survives a killed process (not a power loss).
    case normal
    /// WAL with `synchronous=FULL`: every group commit is fsynced (survives power loss).
    case full
}

/// An error whose `description` says too little for a log line (PostgreSQL's errors describe themselves as one generic
/// sentence, so that they never reach a client by accident), with a text an operator's log can carry.
public protocol LoggableError: Error {
    /// What went wrong, on one line, without what must not reach a log (keys, token hashes, device data).
    var logText: String { get }
}

/// A database backend's own error (SQLite's, PostgreSQL's): the store could not do the work, for a reason of the
/// database and not of the request — its disk full, an I/O error, a lock held too long, the server unreachable, a table
/// gone. Routes answer it 503 with code `storage` (retry later; a device keeps its data and retries), never 500, and
/// never with the database's text; the log gets the cause (``LoggableError``), rate-limited.
public protocol StorageBackendError: Error {}

extension Error {
    /// What a log line shows of this error: ``LoggableError/logText`` where the type has one, its description otherwise.
    public var logDescription: String { (self as? any LoggableError)?.logText ?? "\(self)" }
}
