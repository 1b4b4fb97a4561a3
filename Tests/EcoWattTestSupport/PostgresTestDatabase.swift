import EcoWattPostgres
import Foundation
import Logging
import PostgresNIO

/// A fresh, migrated PostgreSQL database per test in the test process's server (``PostgresServer``), dropped afterwards.
public enum PostgresTestDatabase {
    /// Errors only: a pool's first query races its `run()` and logs a warning about it every time.
    public static let logger = {
        var logger = Logger(label: "ecowatt.postgres.test")
        logger.logLevel = .error
        return logger
    }()

    /// Runs `body` with `instances` clients on one new database (migrated unless `migrated` is false), as that many
    /// server instances would share it.
    public static func with(instances: Int = 1, migrated: Bool = true, _ body: ([EcoWattPostgresDatabase]) async throws -> Void) async throws {
        try await withFreshDatabase { url in
            let databases = (0..<max(1, instances)).map { _ in EcoWattPostgresDatabase(url: url, maximumConnections: 8, logger: logger) }
            try await running(databases[...]) {
                if migrated { try await databases[0].migrate() }
                try await body(databases)
            }
        }
    }

    /// Runs `body` with the URL of a new, empty database (what a server's `database_url` names), dropped afterwards.
    public static func withURL(_ body: (String) async throws -> Void) async throws {
        try await withFreshDatabase { url in
            let password = url.password.map { ":\($0)" } ?? ""
            try await body("postgres://\(url.user)\(password)@\(url.host):\(url.port)/\(url.database)?sslmode=\(url.tls.rawValue)")
        }
    }

    /// Runs one statement on the database `url` names, as an operator's `psql` would (a test that breaks the schema
    /// under a running server).
    public static func execute(_ sql: String, on url: String) async throws {
        try await onServer(PostgresURL(parsing: url), sql)
    }

    /// The first column of each row of `sql` on the database `url` names, as text (a test's diagnostics).
    public static func texts(_ sql: String, on url: String) async throws -> [String] {
        try await onServer(PostgresURL(parsing: url), sql).map { try $0.decode(String?.self) ?? "NULL" }
    }

    /// Creates a database in the test server, runs `body` with where it is, and drops it (also when `body` throws).
    private static func withFreshDatabase(_ body: (PostgresURL) async throws -> Void) async throws {
        let server = try PostgresURL(parsing: PostgresServer.requireURL())
        let name = "ecowatt_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await onServer(server, "CREATE DATABASE \(name)")
        do {
            try await body(server.with(database: name))
        } catch {
            _ = try? await onServer(server, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            throw error
        }
        try await onServer(server, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs `body` with every client's pool running.
    private static func running(_ databases: ArraySlice<EcoWattPostgresDatabase>, _ body: () async throws -> Void) async throws {
        guard let first = databases.first else { return try await body() }
        try await first.withRunning { try await running(databases.dropFirst(), body) }
    }

    /// Runs one statement on the database `server` names (a client of its own: a pool runs once) and returns its rows,
    /// read to the end (an error raised while it runs comes with them).
    @discardableResult
    private static func onServer(_ server: PostgresURL, _ sql: String) async throws -> [PostgresRow] {
        let admin = EcoWattPostgresDatabase(url: server, maximumConnections: 1, logger: logger)
        return try await admin.withRunning {
            try await admin.client.query(PostgresQuery(unsafeSQL: sql)).collect()
        }
    }
}
