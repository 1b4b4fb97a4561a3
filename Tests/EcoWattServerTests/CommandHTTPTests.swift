import EcoWattProtocol
import EcoWattServer
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct CommandHTTPTests {
    static let writeByName = #"{"action":"write_register","target_register":"export_power","value":50}"#
    static let setPower = #"{"action":"set_power","value":5000}"#

    @Test func queuedCommandsAreDeliveredOneAtATimeOldestFirst() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("DEV-1", client: client)
            let first = try await client.operatorJSON(.post, "/api/v1/devices/DEV-1/commands", Self.writeByName, server: test)
            #expect(first.status == .created)
            let second = try await client.operatorJSON(.post, "/api/v1/devices/DEV-1/commands", Self.setPower, server: test)
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

            let stored = try await client.execute(uri: "/api/v1/commands/\(secondID)", method: .get, headers: test.operatorHeaders).json
            #expect(stored["status"] as? String == "failed")
            #expect(stored["error_message"] as? String == "no echo")
            let history = try await client.execute(uri: "/api/v1/devices/DEV-1/commands?limit=10", method: .get, headers: test.operatorHeaders)
            #expect((history.json["items"] as? [[String: Any]])?.map { $0["command_id"] as? String } == [secondID, firstID])
            let stats = try await client.execute(uri: "/api/v1/stats/commands", method: .get, headers: test.operatorHeaders).json
            let byStatus = try #require(stats["by_status"] as? [String: Any])
            #expect(byStatus["completed"] as? Int == 1)
            #expect(byStatus["failed"] as? Int == 1)
            #expect(stats["total"] as? Int == 2)

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
                let body = #"{"action":"set_power_percentage","value":\#(index)}"#
                let response = try await client.operatorJSON(.post, "/api/v1/devices/RACE/commands", body, server: test)
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
                "/api/v1/devices/TTL/commands",
                #"{"action":"get_power_stats","ttl_seconds":5}"#,
                server: test
            )
            let expiringID = try #require(shortLived.json["command_id"] as? String)
            test.clock.set(now + 6_000)
            let poll = try await client.execute(uri: "/commands/TTL/poll", method: .get)
            #expect(poll.json["count"] as? Int == 0)
            let expired = try await client.execute(uri: "/api/v1/commands/\(expiringID)", method: .get, headers: test.operatorHeaders)
            #expect(expired.json["status"] as? String == "expired")

            // Dispatched without a result: timed out by the sweep, and a late result is still recorded.
            let queued = try await client.operatorJSON(.post, "/api/v1/devices/TTL/commands", #"{"action":"reset_power_stats"}"#, server: test)
            let id = try #require(queued.json["command_id"] as? String)
            #expect(try await client.execute(uri: "/commands/TTL/poll", method: .get).json["count"] as? Int == 1)
            test.clock.set(now + 6_000 + 31_000)
            await test.server.commands.sweep()
            let timedOut = try await client.execute(uri: "/api/v1/commands/\(id)", method: .get, headers: test.operatorHeaders)
            #expect(timedOut.json["status"] as? String == "timed_out")
            let late = try await client.postJSON("/commands/TTL/result", #"{"command_result":{"command_id":"\#(id)","status":"success"}}"#)
            #expect(late.json["status"] as? String == "completed")

            // Cancel: only while pending.
            let cancellable = try await client.operatorJSON(
                .post,
                "/api/v1/devices/TTL/commands",
                #"{"action":"reset_peripheral_stats"}"#,
                server: test
            )
            let cancelID = try #require(cancellable.json["command_id"] as? String)
            let cancel = try await client.operatorJSON(.delete, "/api/v1/commands/\(cancelID)", nil, server: test)
            #expect(cancel.json["status"] as? String == "cancelled")
            #expect(try await client.operatorJSON(.delete, "/api/v1/commands/\(cancelID)", nil, server: test).status == .conflict)
            #expect(try await client.operatorJSON(.delete, "/api/v1/commands/unknown-id", nil, server: test).status == .notFound)
            #expect(try await client.execute(uri: "/commands/TTL/poll", method: .get).json["count"] as? Int == 0)
        }
    }

    /// Bodies that are not JSON are 400; JSON that does not fit the schema or the firmware's rules is 422, with a reason.
    @Test(arguments: [
        (#"{"action":"reboot"}"#, 422, "action"),
        (#"{"action":"set_power","value":50.5}"#, 422, "schema"),
        (#"{"action":"set_power","value":"50"}"#, 422, "value"),
        (#"{"action":"set_power_percentage","value":150}"#, 422, "outside"),
        (#"{"action":"write_register","target_register":"Flux","value":1}"#, 422, "unknown target_register"),
        (#"{"action":"write_register","value":1}"#, 422, "target_register"),
        (#"{"action":"get_power_stats","ttl_seconds":-1}"#, 422, "ttl_seconds"),
        (#"{"nothing":true}"#, 422, "action"),
        (#"{"action":"#, 400, "Malformed JSON"),
    ])
    func invalidCommandsAreRefusedWithAReason(_ body: String, _ status: Int, _ reason: String) async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("BAD", client: client)
            let response = try await client.operatorJSON(.post, "/api/v1/devices/BAD/commands", body, server: test)
            #expect(response.status.code == status)
            let message = (response.json["error"] as? [String: Any])?["message"] as? String
            #expect(message?.contains(reason) == true, "\(response.json)")
            #expect(try await client.execute(uri: "/commands/BAD/poll", method: .get).json["count"] as? Int == 0)
        }
    }

    @Test func idempotencyKeyQueuesOnce() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("IDEM", client: client)
            let body = #"{"action":"set_power","value":5000,"idempotency_key":"op-42"}"#
            let first = try await client.operatorJSON(.post, "/api/v1/devices/IDEM/commands", body, server: test)
            let second = try await client.operatorJSON(.post, "/api/v1/devices/IDEM/commands", body, server: test)
            #expect(first.status == .created)
            #expect(second.status == .ok)
            #expect(first.json["command_id"] as? String == second.json["command_id"] as? String)
            let history = try await client.execute(uri: "/api/v1/devices/IDEM/commands", method: .get, headers: test.operatorHeaders)
            #expect((history.json["items"] as? [Any])?.count == 1)
        }
    }

    @Test func aCommandQueuedBeforeARestartIsDeliveredAfterIt() async throws {
        let first = try await TestServer()
        let commandID = ResultBox()
        try await first.run { client in
            // Bound before the restart: the binding is persisted with the upload.
            try await first.bind("QUEUED", client: client)
            let queued = try await client.operatorJSON(.post, "/api/v1/devices/QUEUED/commands", Self.setPower, server: first)
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
            let queued = try await client.operatorJSON(.post, "/api/v1/devices/RESTART/commands", Self.setPower, server: first)
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
