import EcoWattPostgres
import EcoWattStorage
import EcoWattTestSupport
import PostgresNIO
import Testing

/// The PostgreSQL backend's own parts (issue 22): where the database is, and the schema migrations. The stores are
/// tested by the contract suites in EcoWattStorageTests, against every backend.
@Suite struct PostgresDatabaseTests {
    /// The schema's migrations: accounts, telemetry, commands, the device stores.
    static let versions = [1, 2, 3, 4, 5, 6]

    @Test func aDatabaseURLGivesHostPortUserDatabaseAndTLS() throws {
        let url = try PostgresURL(parsing: "postgres://ecowatt:s3cret@db.example:6543/fleet?sslmode=require")
        #expect(url.host == "db.example" && url.port == 6543 && url.user == "ecowatt" && url.password == "s3cret")
        #expect(url.database == "fleet" && url.tls == .require)
        #expect(url.description == "postgres://ecowatt@db.example:6543/fleet?sslmode=require", "no password in logs")
        let defaults = try PostgresURL(parsing: "postgresql://db")
        #expect(defaults.port == 5432 && defaults.user == "postgres" && defaults.database == "postgres" && defaults.tls == .prefer)
        #expect(try PostgresURL(parsing: "postgres://app@db/").database == "app", "the user's database by default")
    }

    @Test(arguments: [
        "sqlite:///var/lib/ecowatt.db", "postgres:///fleet", "postgres://db:70000/fleet", "postgres://db/a/b",
        "postgres://db/fleet?sslmode=verify-full",
    ])
    func aURLThatIsNotAPostgreSQLServerIsRefusedWithItsReason(_ text: String) {
        #expect(throws: PostgresURL.Failure.self) { try PostgresURL(parsing: text) }
    }

    @Test(.enabled(if: PostgresServer.enabled))
    func migrationsRunOnceEvenWhenTwoInstancesStartAtOnce() async throws {
        // PostgresTestDatabase migrates with its first client; two more instances then start at once.
        try await PostgresTestDatabase.with(instances: 3) { instances in
            async let first = instances[1].migrate()
            async let second = instances[2].migrate()
            let ran = try await [first, second]
            #expect(ran == [[], []], "already up to date")
            let versions = try await instances[0].client.query("SELECT version FROM schema_migrations ORDER BY version")
                .collect().map { try $0.decode(Int.self) }
            #expect(versions == PostgresDatabaseTests.versions)
        }
    }

    @Test(.enabled(if: PostgresServer.enabled))
    func twoInstancesMigratingAFreshDatabaseAtOnceApplyEachMigrationOnce() async throws {
        try await PostgresTestDatabase.with(instances: 2, migrated: false) { instances in
            async let first = instances[0].migrate()
            async let second = instances[1].migrate()
            let ran = try await [first, second]
            #expect(ran.sorted { $0.count < $1.count } == [[], PostgresDatabaseTests.versions], "one applied them, the other found them applied")
        }
    }

    /// A `PSQLError`'s description is one generic sentence and its debug description runs over many lines (the query's
    /// SQL, the server's detail line that quotes key values); a log line gets the SQLSTATE, the server's message and
    /// the names it concerns, on one line, never a bound value.
    @Test(.enabled(if: PostgresServer.enabled))
    func aDatabaseErrorInALogSaysWhatWentWrongWithoutTheBoundValues() async throws {
        try await PostgresTestDatabase.with { instances in
            let client = instances[0].client
            let secret = "ewt_bound_secret_value"
            let missing = await #expect(throws: PSQLError.self) {
                try await client.query("SELECT name FROM no_such_table WHERE name = \(secret)").collect()
            }
            let text = try #require(missing).logDescription
            #expect(text.contains("sqlstate: 42P01") && text.contains(#"relation "no_such_table" does not exist"#), "\(text)")
            #expect(!text.contains(secret), "\(text)")
            #expect("\(try #require(missing))".contains("Generic description"), "why logs need more than the description")
            #expect(!text.contains("SELECT") && !text.contains("\n"), "one line, without the query: \(text)")

            _ = try await client.query("INSERT INTO server_state (name, value) VALUES (\(secret), 'x')")
            let duplicate = await #expect(throws: PSQLError.self) {
                try await client.query("INSERT INTO server_state (name, value) VALUES (\(secret), 'y')")
            }
            let duplicateText = try #require(duplicate).logDescription
            #expect(duplicateText.contains("sqlstate: 23505") && duplicateText.contains("constraint: server_state_pkey"), "\(duplicateText)")
            #expect(!duplicateText.contains(secret), "the detail line quotes the key: \(duplicateText)")
        }
    }
}
