import Crypto
import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import EcoWattStorage
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The audit trail (issue 19): what is recorded, and that editing, deleting, truncating or recomputing the chain in
/// the database is detected.
@Suite struct AuditTrailHTTPTests {
    static func verify(_ client: some TestClientProtocol, _ test: TestServer) async throws -> [String: Any] {
        let response = try await client.execute(uri: "/api/v1/audit/verify", method: .get, headers: test.operatorHeaders)
        try #require(response.status == .ok)
        return response.json
    }

    @Test func changesAreRecordedAndEditsDeletionsTruncationAndRecomputationAreDetected() async throws {
        let test = try await TestServer()
        try await test.run { client in
            // Four state-changing requests and a read (not recorded).
            var response = try await client.operatorJSON(.post, "/api/v1/devices", #"{"device_id":"AUD-1"}"#, server: test)
            #expect(response.status == .created)
            let requestID = try #require(response.headers[HTTPField.Name("X-Request-Id")!])
            let command = #"{"action":"write_register","target_register":"export_power","value":50}"#
            response = try await client.operatorJSON(.post, "/api/v1/devices/AUD-1/commands", command, server: test)
            #expect(response.status == .created)
            response = try await client.operatorJSON(.post, "/api/v1/devices/NOPE/commands", command, server: test)
            #expect(response.status == .notFound)
            _ = try await client.postJSON("/api/v1/auth/login", #"{"name":"mallory","password":"guessing guessing"}"#)
            _ = try await client.execute(uri: "/api/v1/devices", method: .get, headers: test.operatorHeaders)

            response = try await client.execute(uri: "/api/v1/audit?limit=10", method: .get, headers: test.operatorHeaders)
            let items = try #require(response.json["items"] as? [[String: Any]])
            #expect(items.map { $0["action"] as? String } == ["login", "queueCommand", "queueCommand", "createDevice"])
            let create = items[3]
            #expect(create["actor"] as? String == "bootstrap" && create["role"] as? String == "admin")
            #expect(create["target"] as? String == "" && create["outcome"] as? String == "201" && create["request_id"] as? String == requestID)
            let digest = HexCoding.encode(Array(SHA256Digest.of(#"{"device_id":"AUD-1"}"#)))
            #expect(create["body_digest"] as? String == digest)
            #expect(items[2]["target"] as? String == "device_id=AUD-1")
            #expect(items[1]["outcome"] as? String == "404", "refused requests are recorded with their outcome")
            #expect(items[0]["actor"] as? String == "login:mallory" && items[0]["outcome"] as? String == "401")
            #expect(items[0]["client_address"] as? String == "127.0.0.1")
            response = try await client.execute(uri: "/api/v1/audit?after=0&limit=2", method: .get, headers: test.operatorHeaders)
            #expect((response.json["items"] as? [[String: Any]])?.map { $0["sequence"] as? Int } == [1, 2], "oldest first for export")

            var result = try await Self.verify(client, test)
            #expect(result["intact"] as? Bool == true && result["entries"] as? Int == 4 && result["external_sequence"] as? Int == 4)
            let head = try String(
                contentsOfFile: test.server.configuration.storage.auditHeadPath(test.server.configuration.accounts),
                encoding: .utf8
            )
            #expect(head.split(separator: "\n").count == 4, "every head appended outside the database")

            let file = try DatabaseInspector(path: test.server.configuration.storage.databasePath)
            // 1. An edited entry.
            try file.writeBypassingTheServer(["UPDATE audit_log SET outcome = '200' WHERE sequence = 2"])
            result = try await Self.verify(client, test)
            #expect(result["intact"] as? Bool == false && result["first_broken_sequence"] as? Int == 2)
            #expect((result["first_broken_reason"] as? String)?.contains("edited") == true)
            try file.writeBypassingTheServer(["UPDATE audit_log SET outcome = '201' WHERE sequence = 2"])
            #expect(try await Self.verify(client, test)["intact"] as? Bool == true)

            // 2. A deleted entry in the middle.
            try file.writeBypassingTheServer([
                "CREATE TEMP TABLE saved AS SELECT * FROM audit_log WHERE sequence = 3", "DELETE FROM audit_log WHERE sequence = 3",
            ])
            result = try await Self.verify(client, test)
            #expect(result["intact"] as? Bool == false && result["first_broken_sequence"] as? Int == 3)
            try file.writeBypassingTheServer(["INSERT INTO audit_log SELECT * FROM temp.saved"])
            #expect(try await Self.verify(client, test)["intact"] as? Bool == true)

            // 3. A truncated tail: the chain is consistent, but shorter than the external head says.
            try file.writeBypassingTheServer(["DELETE FROM audit_log WHERE sequence = 4"])
            result = try await Self.verify(client, test)
            #expect(result["intact"] as? Bool == false && (result["first_broken_reason"] as? String)?.contains("truncated") == true)

            // 4. An edit with every later hash recomputed: consistent inside, but not the head outside.
            var statements: [String] = []
            var previous = AuditEntry.genesis
            for row in try file.rows("SELECT * FROM audit_log ORDER BY sequence") {
                var draft = AuditDraft(
                    atMs: row["at_ms"].int64!,
                    actor: row["actor"].string!,
                    role: row["role"].string!,
                    action: row["action"].string!,
                    target: row["target"].string!,
                    bodyDigest: row["body_digest"].string!,
                    outcome: row["outcome"].string!,
                    requestID: row["request_id"].string!,
                    clientAddress: row["client_address"].string!
                )
                let sequence = row["sequence"].int64!
                if sequence == 2 { draft.outcome = "500" }
                let entry = AuditEntry.chained(sequence: sequence, draft: draft, previousHash: previous)
                statements.append(
                    "UPDATE audit_log SET outcome = '\(draft.outcome)', previous_hash = '\(entry.previousHash)', hash = '\(entry.hash)' WHERE sequence = \(sequence)"
                )
                previous = entry.hash
            }
            // The truncated entry's place filled again, recomputed too.
            let forged = AuditEntry.chained(
                sequence: 4,
                draft: AuditDraft(
                    atMs: 0,
                    actor: "forger",
                    role: "",
                    action: "login",
                    target: "",
                    bodyDigest: "",
                    outcome: "200",
                    requestID: "",
                    clientAddress: ""
                ),
                previousHash: previous
            )
            statements.append(
                """
                INSERT INTO audit_log (sequence, at_ms, actor, role, action, target, body_digest, outcome, request_id, client_address,
                  previous_hash, hash) VALUES (4, 0, 'forger', '', 'login', '', '', '200', '', '', '\(forged.previousHash)', '\(forged.hash)')
                """
            )
            try file.writeBypassingTheServer(statements)
            result = try await Self.verify(client, test)
            #expect(result["intact"] as? Bool == false && result["first_broken_sequence"] as? Int == 4)
            #expect((result["first_broken_reason"] as? String)?.contains("recomputed") == true)
        }
    }
}

enum SHA256Digest {
    static func of(_ text: String) -> [UInt8] {
        var hasher = Crypto.SHA256()
        hasher.update(data: Array(text.utf8))
        return Array(hasher.finalize())
    }
}
