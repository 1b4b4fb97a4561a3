import EcoWattTestSupport
import Foundation
import Testing

/// The database fails under a running server (tables gone, as after a botched manual migration). Clients get a 503 that
/// names what did not happen, never the database's message; the operator's log has the SQLSTATE and the server's message
/// (PostgreSQL's errors describe themselves as one generic sentence); nothing refused is lost once the tables are back.
/// The real binary on a real PostgreSQL.
@Suite(.enabled(if: PostgresServer.enabled, "needs PostgreSQL"))
struct StorageFailureProcessTests {
    @Test func tablesGoneUnderTheServerAre503sForClientsAndTheDatabasesMessageInTheLog() async throws {
        try await PostgresTestDatabase.withURL { url in
            let root = ProcessTests.temporaryRoot()
            defer { try? FileManager.default.removeItem(at: root) }
            let server = try await ServerProcess(root: root, port: LoopbackPort.free(), environment: ["ECOWATT_DATABASE_URL": url])
            func devices() async throws -> (status: Int, body: String) {
                try await LoopbackHTTP.request(port: server.port, path: "/api/v1/devices", headers: ["Authorization": "Bearer ewt_unknown"])
            }
            func upload(_ nonce: UInt32) async throws -> (status: Int, body: String) {
                let body = Uploads.body(device: "BROKEN-1", nonce: nonce)
                return try await LoopbackHTTP.request(port: server.port, method: "POST", path: "/aggregated/BROKEN-1", body: body)
            }
            #expect(try await devices().status == 401, "an unknown token while the store works")
            #expect(try await upload(11001).status == 200)

            let tables = ["api_tokens", "devices"]
            for table in tables { try await PostgresTestDatabase.execute("ALTER TABLE \(table) RENAME TO \(table)_away", on: url) }
            let refused = try await devices()
            #expect(refused.status == 503 && refused.body.contains("could not check the credentials"), "\(refused.body)")
            let stored = try await upload(11002)
            #expect(stored.status == 503 && stored.body.contains("Upload not stored, retry later"), "\(stored.body)")
            for answer in [refused.body, stored.body] {
                #expect(!tables.contains { answer.contains($0 + "\"") } && !answer.contains("42P01") && !answer.contains("PSQL"), "\(answer)")
            }
            let log = server.log
            for table in tables {
                #expect(log.contains("sqlstate: 42P01, message: relation \"\(table)\" does not exist"), "the table in the log: \(log)")
            }
            #expect(!log.contains("Generic description"), "\(log)")
            let start = log.split(separator: "\n").first { $0.contains("EcoWatt Cloud starting") } ?? ""
            #expect(start.contains("database=postgres://") && !start.contains(".sqlite"), "the database in use: \(start)")

            for table in tables { try await PostgresTestDatabase.execute("ALTER TABLE \(table)_away RENAME TO \(table)", on: url) }
            #expect(try await devices().status == 401)
            #expect(try await upload(11002).status == 200, "the refused upload was not stored: its retry is no replay")
            try await server.stop(signal: SIGTERM)
        }
    }
}
