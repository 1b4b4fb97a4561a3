import EcoWattStorage
import PostgresNIO

/// PostgreSQL errors in logs: a `PSQLError` describes itself as "Generic description to prevent accidental leakage", and
/// its debug description carries the query's SQL (many lines for most of ours), the source file and the server's detail
/// line, which quotes key values (token hashes, device ids). A log line gets the error's code, the server's SQLSTATE,
/// message and the names of what it concerns, and the underlying transport error, on one line.
extension PSQLError: LoggableError {
    public var logText: String {
        var parts = ["PostgreSQL error \(code)"]
        if let info = serverInfo {
            let fields: [(String, PSQLError.ServerInfo.Field)] = [
                ("sqlstate", .sqlState), ("message", .message), ("hint", .hint), ("table", .tableName), ("column", .columnName),
                ("constraint", .constraintName),
            ]
            for case let (name, value?) in fields.map({ ($0.0, info[$0.1]) }) { parts.append("\(name): \(value)") }
        }
        if let underlying { parts.append("underlying: \(underlying.logDescription)") }
        return parts.joined(separator: ", ")
    }
}

/// PostgreSQL's errors are the storage's, answered 503 (``StorageBackendError``).
extension PSQLError: StorageBackendError {}

extension PostgresDecodingError: StorageBackendError {}

/// A transaction whose `COMMIT` or rollback failed (postgres-nio wraps it).
extension PostgresTransactionError: StorageBackendError {}

extension PostgresDecodingError: LoggableError {
    public var logText: String {
        "PostgreSQL decoding error \(code): column \(columnName) (\(postgresType)) as \(targetType)"
    }
}
