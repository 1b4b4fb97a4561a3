import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL for the tests (issue 22): `$ECOWATT_TEST_POSTGRES_URL` when set, else one cluster started once
/// per test process by `scripts/postgres.sh` on a free loopback port and stopped when the process exits. Each test
/// makes its own database in it.
///
/// Where PostgreSQL is not installed the PostgreSQL cases are skipped, unless `ECOWATT_REQUIRE_POSTGRES=1` (set by
/// `scripts/test.sh`, which installs it): then they fail.
public enum PostgresServer {
    /// The server's URL (its `postgres` database), or why there is none.
    public static let url: Result<String, PostgresUnavailable> = start()

    /// Whether the PostgreSQL cases run: a server is there, or one is required (then a missing one fails them).
    public static var enabled: Bool {
        if case .success = url { return true }
        return ProcessInfo.processInfo.environment["ECOWATT_REQUIRE_POSTGRES"] == "1"
    }

    /// The URL or the reason none could be started (thrown into the test that needed it).
    public static func requireURL() throws -> String { try url.get() }

    private static func start() -> Result<String, PostgresUnavailable> {
        if let given = ProcessInfo.processInfo.environment["ECOWATT_TEST_POSTGRES_URL"], !given.isEmpty { return .success(given) }
        guard (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.isEmpty == false else {
            return .failure(PostgresUnavailable(reason: "PostgreSQL is not installed (scripts/install-deps.sh postgresql)"))
        }
        // Under /tmp with mode 755: as root the cluster belongs to `postgres`, which must reach the directory.
        let directory = "/tmp/ecowatt-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let script = Conformance.packageRoot.appendingPathComponent("scripts/postgres.sh").path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            let port = LoopbackPort.free()
            let result = try ChildProcess.runBlocking(script, ["start", directory, "\(port)"], timeout: .seconds(90))
            guard result.status == 0 else {
                return .failure(PostgresUnavailable(reason: "scripts/postgres.sh failed: \(result.error)"))
            }
            startedDirectory = strdup(directory)
            stopScript = strdup(script)
            atexit {
                guard let directory = PostgresServer.startedDirectory, let script = PostgresServer.stopScript else { return }
                _ = try? ChildProcess.runBlocking(String(cString: script), ["stop", String(cString: directory)], timeout: .seconds(30))
                _ = try? FileManager.default.removeItem(atPath: String(cString: directory))
            }
            return .success(result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            return .failure(PostgresUnavailable(reason: "PostgreSQL not started: \(error)"))
        }
    }

    /// What `atexit` needs (set once, before the handler is registered).
    nonisolated(unsafe) static var startedDirectory: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) static var stopScript: UnsafeMutablePointer<CChar>?
}

public struct PostgresUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
