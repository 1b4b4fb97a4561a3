import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Where PostgreSQL is: `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`, the form
/// of `storage.database_url` (and of `psql`). The port defaults to 5432, the user to `postgres`, the database to the
/// user's name, and TLS to `prefer`.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    /// Why a URL was refused (the reason goes into the start-up error).
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case invalid(String)

        public var description: String {
            switch self {
            case .invalid(let reason): "invalid PostgreSQL URL: \(reason)"
            }
        }
    }

    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    public init(parsing text: String) throws(Failure) {
        guard let url = URLComponents(string: text), url.scheme == "postgres" || url.scheme == "postgresql" else {
            throw .invalid("expected postgres://user@host:port/database")
        }
        guard let host = url.host, !host.isEmpty else { throw .invalid("no host") }
        let port = url.port ?? 5432
        guard (1...65_535).contains(port) else { throw .invalid("port \(port) out of range") }
        self.host = host
        self.port = port
        user = url.user.flatMap { $0.isEmpty ? nil : $0 } ?? "postgres"
        password = url.password
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        guard !path.contains("/") else { throw .invalid("the path names one database") }
        database = path.isEmpty ? user : path
        let mode = url.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        guard let tls = TLSMode(rawValue: mode) else { throw .invalid("sslmode must be disable, prefer or require") }
        self.tls = tls
    }

    /// The URL with the password left out (for logs).
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)?sslmode=\(tls.rawValue)" }

    /// The same server and credentials, another database.
    public func with(database: String) -> PostgresURL {
        var copy = self
        copy.database = database
        return copy
    }

    func configuration(maximumConnections: Int) -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch self.tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(
            host: host,
            port: port,
            username: user,
            password: password,
            database: database,
            tls: tls
        )
        configuration.options.maximumConnections = maximumConnections
        return configuration
    }
}

/// One PostgreSQL database shared by every server instance (issue 22): a `PostgresClient` (a connection pool) that runs
/// as a `Service`, and the schema migrations.
public final class EcoWattPostgresDatabase: Service, Sendable {
    public let client: PostgresClient
    public let url: PostgresURL
    let logger: Logger

    public init(url: PostgresURL, maximumConnections: Int = 20, logger: Logger = Logger(label: "ecowatt.postgres")) {
        self.url = url
        self.logger = logger
        client = PostgresClient(configuration: url.configuration(maximumConnections: maximumConnections), backgroundLogger: logger)
    }

    /// Runs the connection pool until graceful shutdown (queries wait while it is not running). Once per instance:
    /// a pool that stopped is closed for good.
    public func run() async throws {
        await client.run()
    }

    /// Runs the connection pool for the time of `body` (a command-line tool or a test, outside a service group); once
    /// per instance, as ``run()``.
    public func withRunning<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Runs `body` in one transaction on one connection (committed when it returns, rolled back when it throws).
    /// The body's own error is rethrown as it is (a store error such as a cap reached), not wrapped.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError, error.rollbackError == nil { throw closureError }
            throw error
        }
    }

    /// The rows of `query`.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        try await client.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
    }
}

extension PostgresConnection {
    /// The rows of `query` on this connection (inside a transaction).
    func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        try await self.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
    }

    /// Runs `query` for its effect and returns once it has finished, its rows read and dropped.
    ///
    /// PostgresNIO's `query` returns as soon as a statement's row description arrives, before the statement has run:
    /// an error raised while it runs (a deadlock found while `SELECT … FOR UPDATE` or `pg_advisory_xact_lock` waits)
    /// comes with the rows, and is lost if they are never read. The transaction is then aborted without anyone knowing,
    /// and its next statement fails with `25P02` ("current transaction is aborted"), which the writer does not retry
    /// (measured: uploads answered 503 after a 1 s lock wait, PostgreSQL's `deadlock_timeout`, in the two-instance
    /// crash test). Every statement whose rows are not wanted goes through here.
    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        for try await _ in try await self.query(query, logger: logger) {}
    }
}

extension PostgresClient {
    /// Runs `query` on a pooled connection for its effect; see ``PostgresConnection/execute(_:logger:)``.
    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        for try await _ in try await self.query(query, logger: logger) {}
    }
}

extension PostgresRandomAccessRow {
    /// The column `name` as `T` (a missing column or a type mismatch throws: a schema bug, never device input).
    func value<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        try self[name].decode(T.self)
    }
}

extension Error {
    /// The PostgreSQL error code (SQLSTATE) of a server error, such as `23505` for a unique violation.
    var sqlState: String? { (self as? PSQLError)?.serverInfo?[.sqlState] }
}
