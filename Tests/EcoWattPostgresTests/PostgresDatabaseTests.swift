import EcoWattPostgres
import EcoWattTestSupport
import PostgresNIO
import Testing

/// The PostgreSQL backend's own parts (issue 22): where the database is, and the schema migrations. The stores are
/// tested by the contract suites in EcoWattStorageTests, against every backend.
@Suite struct PostgresDatabaseTests {
    /// The schema's migrations: accounts, telemetry, commands, the device stores.
    static let versions = [1, 2, 3, 4, 5]

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
}
