import EcoWattProtocol
import EcoWattServer
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct CommandHTTPTests {
    static let writeByName = #"{"command":{"action":"write_register","target_register":"export_power","value":50}}"#
    static let setPower = #"{"command_type":"set_power","parameters":{"value":5000}}"#

    @Test func queuedCommandsAreDeliveredOneAtATimeOldestFirst() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("DEV-1", client: client)
            let first = try await client.operatorJSON(.post, "/commands/DEV-1", Self.writeByName, server: test)
            #expect(first.status == .created)
            let second = try await client.operatorJSON(.post, "/commands/DEV-1", Self.setPower, server: test)
            #expect(second.status == .created)
            let firstID = try #require(first.json["command_id"] as? String)
            let secondID = try #require(second.json["command_id"] as? String)

            let poll1 = try await client.execute(uri: "/commands/DEV-1/poll", method: .get)
            #expect(poll1.status == .ok)
            #expect(poll1.json["count"] as? Int == 1)
            let delivered1 = try #require((poll1.json["commands"] as? [[String: Any]])?.first)
            #expect(delivered1["command_id"] as? String == firstID)
            let command1 = try #require(delivered1["command"] as? [String: Any])
            #expect(command1["action"] as? String == "write_register")
            #expect(command1["register_address"] as? Int == 8)  // "export_power" normalised (spec §4.5)
            #expect(command1["value"] as? Int == 50)
            // The reply fits the device's 512-byte pool with 10 % to spare.
            let pollText = String(buffer: poll1.body)
            #expect(try ArduinoJSONPool.bytes(pollText) <= 460, "\(pollText)")

            let poll2 = try await client.execute(uri: "/commands/DEV-1/poll", method: .get)
            let delivered2 = try #require((poll2.json["commands"] as? [[String: Any]])?.first)
            #expect(delivered2["command_id"] as? String == secondID)
            #expect((delivered2["command"] as? [String: Any])?["value"] as? Int == 5000)

            let empty = try await client.execute(uri: "/commands/DEV-1/poll", method: .get)
            #expect(String(buffer: empty.body) == #"{"commands":[],"count":0}"#)

            // Results in the firmware shape and in the original shape.
            let done = try await client.postJSON(
                "/commands/DEV-1/result",
                #"{"command_result":{"command_id":"\#(firstID)","status":"success","executed_at":"2025-11-28T03:20:15Z"}}"#
            )
            #expect(done.status == .ok)
            #expect(done.json["status"] as? String == "completed")
            let failed = try await client.postJSON(
                "/commands/DEV-1/result",
                #"{"command_id":"\#(secondID)","success":false,"error_message":"no echo"}"#
            )
            #expect(failed.json["status"] as? String == "failed")

            let status = try await client.execute(uri: "/commands/status/\(secondID)", method: .get, headers: test.operatorHeaders)
            let stored = try #require(status.json["command"] as? [String: Any])
            #expect(stored["status"] as? String == "failed")
            #expect(stored["error_msg"] as? String == "no echo")
            let history = try await client.execute(uri: "/commands/DEV-1/history?limit=10", method: .get, headers: test.operatorHeaders)
            #expect((history.json["history"] as? [[String: Any]])?.map { $0["command_id"] as? String } == [secondID, firstID])
            let stats = try await client.execute(uri: "/commands/stats", method: .get, headers: test.operatorHeaders)
            let statistics = try #require(stats.json["statistics"] as? [String: Any])
            #expect(statistics["completed"] as? Int == 1)
            #expect(statistics["failed"] as? Int == 1)
            #expect(statistics["total_commands"] as? Int == 2)

            // A result cannot be posted twice, nor for an unknown command.
            let again = try await client.postJSON(
                "/commands/DEV-1/result",
                #"{"command_result":{"command_id":"\#(firstID)","status":"success"}}"#
            )
            #expect(again.status == .conflict)
            let unknown = try await client.postJSON(
                "/commands/DEV-1/result",
                #"{"command_result":{"command_id":"nope","status":"success"}}"#
            )
            #expect(unknown.status == .notFound)
        }
    }

    @Test func concurrentPollsNeverDeliverACommandTwice() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("RACE", client: client)
            var queued = Set<String>()
            for index in 0..<20 {
                let body = #"{"command":{"action":"set_power_percentage","value":\#(index)}}"#
                let response = try await client.operatorJSON(.post, "/commands/RACE", body, server: test)
                queued.insert(try #require(response.json["command_id"] as? String))
            }
            let port = try #require(client.port)
            let bodies = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<40 {
                    group.addTask {
                        try await TestClient.withClient(host: "127.0.0.1", port: port) { connection in
                            String(buffer: try await connection.get("/commands/RACE/poll").body ?? ByteBuffer())
                        }
                    }
                }
                var bodies = [String]()
                for try await body in group { bodies.append(body) }
                return bodies
            }
            var delivered = [String]()
            for body in bodies {
                let value = try JSONParser.parse(Array(body.utf8))
                for command in value["commands"]?.arrayValue ?? [] {
                    delivered.append(command["command_id"]?.stringValue ?? "")
                }
            }
            #expect(delivered.count == 20)
            #expect(Set(delivered) == queued)
        }
    }

    @Test func ttlExpiryTimeoutsAndCancellation() async throws {
        let test = try await TestServer(commandResultTimeoutSeconds: 30)
        try await test.run { client in
            try await test.bind("TTL", client: client)
            let now = test.clock.now
            let shortLived = try await client.operatorJSON(
                .post,
                "/commands/TTL",
                #"{"command":{"action":"get_power_stats"},"ttl_seconds":5}"#,
                server: test
            )
            let expiringID = try #require(shortLived.json["command_id"] as? String)
            test.clock.set(now + 6_000)
            let poll = try await client.execute(uri: "/commands/TTL/poll", method: .get)
            #expect(poll.json["count"] as? Int == 0)
            let expired = try await client.execute(uri: "/commands/status/\(expiringID)", method: .get, headers: test.operatorHeaders)
            #expect((expired.json["command"] as? [String: Any])?["status"] as? String == "expired")

            // Dispatched without a result: timed out by the sweep, and a late result is still recorded.
            let queued = try await client.operatorJSON(.post, "/commands/TTL", #"{"command":{"action":"reset_power_stats"}}"#, server: test)
            let id = try #require(queued.json["command_id"] as? String)
            #expect(try await client.execute(uri: "/commands/TTL/poll", method: .get).json["count"] as? Int == 1)
            test.clock.set(now + 6_000 + 31_000)
            await test.server.commands.sweep()
            let timedOut = try await client.execute(uri: "/commands/status/\(id)", method: .get, headers: test.operatorHeaders)
            #expect((timedOut.json["command"] as? [String: Any])?["status"] as? String == "timed_out")
            let late = try await client.postJSON("/commands/TTL/result", #"{"command_result":{"command_id":"\#(id)","status":"success"}}"#)
            #expect(late.json["status"] as? String == "completed")

            // Cancel: only while pending.
            let cancellable = try await client.operatorJSON(.post, "/commands/TTL", #"{"command":{"action":"reset_peripheral_stats"}}"#, server: test)
            let cancelID = try #require(cancellable.json["command_id"] as? String)
            let cancel = try await client.operatorJSON(.delete, "/commands/\(cancelID)", nil, server: test)
            #expect((cancel.json["command"] as? [String: Any])?["status"] as? String == "cancelled")
            #expect(try await client.operatorJSON(.delete, "/commands/\(cancelID)", nil, server: test).status == .conflict)
            #expect(try await client.operatorJSON(.delete, "/commands/unknown-id", nil, server: test).status == .notFound)
            #expect(try await client.execute(uri: "/commands/TTL/poll", method: .get).json["count"] as? Int == 0)
        }
    }

    @Test(arguments: [
        (#"{"command":{"action":"reboot"}}"#, "unknown action"),
        (#"{"command":{"action":"set_power","value":50.5}}"#, "JSON integer"),
        (#"{"command":{"action":"set_power","value":"50"}}"#, "JSON integer"),
        (#"{"command":{"action":"set_power_percentage","value":150}}"#, "outside"),
        (#"{"command":{"action":"write_register","target_register":"Flux","value":1}}"#, "unknown target_register"),
        (#"{"command":{"action":"write_register","value":1}}"#, "target_register"),
        (#"{"command":{"action":"get_power_stats"},"ttl_seconds":-1}"#, "ttl_seconds"),
        (#"{"nothing":true}"#, "expected"),
        (#"{"command":"#, "Malformed JSON"),
    ])
    func invalidCommandsAreRefusedWithAReason(_ body: String, _ reason: String) async throws {
        let test = try await TestServer()
        try await test.run { client in
            let response = try await client.operatorJSON(.post, "/commands/BAD", body, server: test)
            #expect(response.status == .badRequest)
            #expect((response.json["error"] as? String)?.contains(reason) == true, "\(response.json)")
            #expect(try await client.execute(uri: "/commands/BAD/poll", method: .get).json["count"] as? Int == 0)
        }
    }

    @Test func idempotencyKeyQueuesOnce() async throws {
        let test = try await TestServer()
        try await test.run { client in
            var headers = test.operatorHeaders
            headers[.contentType] = "application/json"
            headers[.init("Idempotency-Key")!] = "op-42"
            let first = try await client.execute(
                uri: "/commands/IDEM",
                method: .post,
                headers: headers,
                body: ByteBuffer(string: Self.setPower)
            )
            let second = try await client.execute(
                uri: "/commands/IDEM",
                method: .post,
                headers: headers,
                body: ByteBuffer(string: Self.setPower)
            )
            #expect(first.status == .created)
            #expect(second.status == .ok)
            #expect(first.json["command_id"] as? String == second.json["command_id"] as? String)
            let history = try await client.execute(uri: "/commands/IDEM/history", method: .get, headers: test.operatorHeaders)
            #expect(history.json["count"] as? Int == 1)
        }
    }

    @Test func aCommandQueuedBeforeARestartIsDeliveredAfterIt() async throws {
        let first = try await TestServer()
        let commandID = ResultBox()
        try await first.run { client in
            // Bound before the restart: the binding is persisted with the upload.
            try await first.bind("QUEUED", client: client)
            let queued = try await client.operatorJSON(.post, "/commands/QUEUED", Self.setPower, server: first)
            commandID.value = queued.json["command_id"] as? String
        }
        let second = try await TestServer(directory: first.directory)
        try await second.run { client in
            let poll = try await client.execute(uri: "/commands/QUEUED/poll", method: .get)
            let delivered = (poll.json["commands"] as? [[String: Any]])?.first?["command_id"] as? String
            #expect(delivered == commandID.value)
        }
    }

    @Test func aResultAfterAServerRestartIsRecorded() async throws {
        let first = try await TestServer()
        let commandID = ResultBox()
        try await first.run { client in
            try await first.bind("RESTART", client: client)
            let queued = try await client.operatorJSON(.post, "/commands/RESTART", Self.setPower, server: first)
            commandID.value = queued.json["command_id"] as? String
            #expect(try await client.execute(uri: "/commands/RESTART/poll", method: .get).json["count"] as? Int == 1)
        }
        let second = try await TestServer(directory: first.directory)
        try await second.run { client in
            let id = try #require(commandID.value)
            let result = try await client.postJSON(
                "/commands/RESTART/result",
                #"{"command_result":{"command_id":"\#(id)","status":"success"}}"#
            )
            #expect(result.status == .ok)
            #expect(result.json["status"] as? String == "completed")
        }
    }
}

/// A value handed out of a `@Sendable` test closure.
final class ResultBox: @unchecked Sendable {
    var value: String?
}
