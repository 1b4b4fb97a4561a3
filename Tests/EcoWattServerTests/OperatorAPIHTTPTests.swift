import EcoWattAPI
import EcoWattProtocol
import EcoWattServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// The operator API v1 (issue 18) through the client generated from the same document, against a live server.
@Suite struct OperatorAPIHTTPTests {
    /// Pages through devices, adding devices between pages; every device present at the start comes exactly once.
    @Test func tenThousandDevicesPageByCursorAndEveryDevicePresentAtTheStartComesOnce() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let api = test.api(client)
            let ids = (0..<10_000).map { String(format: "FLEET-%05d", $0 * 2) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for batch in stride(from: 0, to: ids.count, by: 500) {
                    group.addTask {
                        for id in ids[batch..<min(batch + 500, ids.count)] {
                            _ = try await api.createDevice(body: .json(.init(deviceId: id))).created
                        }
                    }
                }
                try await group.waitForAll()
            }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await api.listDevices(query: .init(limit: 1000, cursor: cursor)).ok.body.json
                seen += page.items.map(\.deviceId)
                cursor = page.nextCursor
                pages += 1
                // Devices created while paging, before and after the cursor.
                for extra in [pages * 2 + 1, 20_000 - pages * 2 + 1] {
                    _ = try await api.createDevice(body: .json(.init(deviceId: String(format: "FLEET-%05d", extra)))).created
                }
            } while cursor != nil
            let original = Set(ids)
            #expect(seen.filter(original.contains) == ids, "every device present at the start, once, in id order")
            #expect(Set(seen).count == seen.count, "no device twice")
            #expect(pages >= 10)
        }
    }

    @Test func devicesFilterByStatusFirmwarePrefixAndLastSeen() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let api = test.api(client)
            let start = test.clock.now
            // Devices register as the firmware does, after their first verified upload.
            for (id, version, at) in [("OLD-1", "1.0.0", start - 3_600_000), ("NEW-1", "1.1.0", start), ("NEW-2", "1.0.0", start)] {
                test.clock.set(at)
                try await test.bind(id, client: client)
                let registered = try await client.postJSON("/devices", #"{"device_id":"\#(id)","firmware_version":"\#(version)"}"#)
                #expect(registered.status == .created, "registered, not held")
            }
            func ids(_ query: Operations.ListDevices.Input.Query) async throws -> [String] {
                try await api.listDevices(query: query).ok.body.json.items.map(\.deviceId)
            }
            #expect(try await ids(.init(status: .offline)) == ["OLD-1"])
            #expect(try await ids(.init(status: .online)) == ["NEW-1", "NEW-2"])
            #expect(try await ids(.init(firmwareVersion: "1.0.0")) == ["NEW-2", "OLD-1"])
            #expect(try await ids(.init(idPrefix: "NEW")) == ["NEW-1", "NEW-2"])
            #expect(try await ids(.init(lastSeenBefore: MillisecondDates.date(start - 60_000))) == ["OLD-1"])
            #expect(try await ids(.init(lastSeenAfter: MillisecondDates.date(start - 60_000))) == ["NEW-1", "NEW-2"])
            let device = try await api.getDevice(path: .init(deviceId: "NEW-1")).ok.body.json
            #expect(device.firmwareVersion == "1.1.0" && device.status == .online && device.admission == .verified)
        }
    }

    /// A typo must not leave commands, configuration or a deployment waiting for a device that does not exist.
    @Test func operatorChangesForUnknownDevicesAre404UnlessCreated() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let api = test.api(client)
            let command = try await api.queueCommand(path: .init(deviceId: "TYPO"), body: .json(.init(action: .getPowerStats)))
            #expect(try command.notFound.body.json.error.code == "unknown_device")
            let config = try await api.setDeviceConfig(
                path: .init(deviceId: "TYPO"),
                body: .json(.init(configUpdate: try Self.object(#"{"sampling_interval":10}"#)))
            )
            #expect(try config.notFound.body.json.error.code == "unknown_device")
            #expect(try await api.getDevice(path: .init(deviceId: "TYPO")).notFound.body.json.error.code == "not_found")
            // Pre-provisioning: the command waits for the device's first poll.
            let created = try await api.queueCommand(path: .init(deviceId: "LATER"), body: .json(.init(action: .getPowerStats, create: true)))
            #expect(try created.created.body.json.status == .pending)
            #expect(try await api.getDevice(path: .init(deviceId: "LATER")).ok.body.json.admission == ._operator)
        }
    }

    @Test func aCommandQueuedWithoutAnExpiryExpiresAfterTheConfiguredDefault() async throws {
        let test = try await TestServer(commandDefaultTTLSeconds: 600)
        try await test.run { client in
            let api = test.api(client)
            _ = try await api.createDevice(body: .json(.init(deviceId: "TTL-1"))).created
            let queued = try await api.queueCommand(path: .init(deviceId: "TTL-1"), body: .json(.init(action: .resetPowerStats))).created.body.json
            let expires = try #require(queued.expiresAt)
            #expect(MillisecondDates.milliseconds(expires) - MillisecondDates.milliseconds(queued.createdAt) == 600_000)
            let explicit = try await api.queueCommand(path: .init(deviceId: "TTL-1"), body: .json(.init(action: .getPowerStats, ttlSeconds: 5)))
                .created.body.json
            #expect(explicit.expiresAt.map(MillisecondDates.milliseconds) == MillisecondDates.milliseconds(explicit.createdAt) + 5_000)
            test.clock.set(test.clock.now + 601_000)
            await test.server.commands.sweep()
            #expect(try await api.getCommand(path: .init(commandId: queued.commandId)).ok.body.json.status == .expired)
            let expired = try await api.listDeviceCommands(path: .init(deviceId: "TTL-1"), query: .init(status: .expired)).ok.body.json
            #expect(expired.items.count == 2)
        }
    }

    @Test func aPendingConfigurationChangeCanBeWithdrawnBeforeTheDeviceTakesIt() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let api = test.api(client)
            try await test.bind("CFG-1", client: client)
            let change = try await api.setDeviceConfig(
                path: .init(deviceId: "CFG-1"),
                body: .json(.init(configUpdate: try Self.object(#"{"sampling_interval":10}"#)))
            ).ok.body.json
            #expect(change.accepted.json == .object([("sampling_interval", .int(10))]))
            // `noContent` throws unless the answer was 204.
            _ = try await api.withdrawDeviceConfig(path: .init(deviceId: "CFG-1")).noContent
            #expect(try await api.getDeviceConfig(path: .init(deviceId: "CFG-1")).ok.body.json.pending == nil)
            let poll = try await client.execute(uri: "/config/CFG-1", method: .get)
            #expect(String(buffer: poll.body) == #"{"is_pending":false}"#, "the device gets nothing")
            #expect(try await api.withdrawDeviceConfig(path: .init(deviceId: "CFG-1")).notFound.body.json.error.code == "not_found")
            let history = try await api.listDeviceConfigHistory(path: .init(deviceId: "CFG-1")).ok.body.json
            #expect(history.items.map(\.event) == [.withdrawn, .requested])
            let refused = try await api.setDeviceConfig(
                path: .init(deviceId: "CFG-1"),
                body: .json(.init(configUpdate: try Self.object(#"{"no_such_setting":1}"#)))
            )
            #expect(try refused.unprocessableContent.body.json.error.code == "invalid")
        }
    }

    /// 405 with `Allow` for a wrong method (operator and device paths); 404 for unknown paths; one error shape.
    @Test func wrongMethodsAre405WithAllowAndErrorsHaveOneShape() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let put = try await client.execute(uri: "/api/v1/devices/X", method: .put, headers: test.operatorHeaders)
            #expect(put.status == .methodNotAllowed)
            #expect(put.headers[.allow] == "GET, PATCH, DELETE")
            #expect((put.json["error"] as? [String: Any])?["code"] as? String == "method_not_allowed")
            let devicePath = try await client.execute(uri: "/ota/check/DEV", method: .delete)
            #expect(devicePath.status == .methodNotAllowed && devicePath.headers[.allow] == "GET")
            let nowhere = try await client.execute(uri: "/api/v1/nowhere", method: .get, headers: test.operatorHeaders)
            #expect(nowhere.status == .notFound && (nowhere.json["error"] as? [String: Any])?["code"] as? String == "no_route")
            let badCursor = try await client.execute(uri: "/api/v1/devices?cursor=%21%21", method: .get, headers: test.operatorHeaders)
            #expect(badCursor.status == .badRequest && (badCursor.json["error"] as? [String: Any])?["code"] as? String == "invalid_cursor")
            let unknownField = try await client.operatorJSON(.patch, "/api/v1/devices/X", #"{"colour":"red"}"#, server: test)
            #expect(unknownField.status == .unprocessableContent)
            let noToken = try await client.execute(uri: "/api/v1/devices", method: .get)
            #expect(noToken.status == .unauthorized)
            let document = try await client.execute(uri: "/api/v1/openapi.json", method: .get, headers: test.operatorHeaders)
            #expect(document.json["openapi"] as? String == "3.1.0")
        }
    }

    static func object(_ json: String) throws -> Components.Schemas.JSONObject {
        try JSONDecoder().decode(Components.Schemas.JSONObject.self, from: Data(json.utf8))
    }
}

extension Components.Schemas.JSONObject {
    var json: JSONValue { (try? JSONParser.parse([UInt8](JSONEncoder().encode(self)))) ?? .null }
}
