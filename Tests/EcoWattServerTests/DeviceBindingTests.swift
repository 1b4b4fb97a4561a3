import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import EcoWattStorage
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

/// Issue 14: every attack a stranger who knows a device id could make on the unsigned device routes, from a second
/// client address (127.0.0.2), refused without touching the device's flow; the same flows from the device's own
/// address (127.0.0.1, where its verified uploads come from) still work.
@Suite struct DeviceBindingTests {
    static let attacker = "127.0.0.2"

    /// One request from `address` to the in-process server.
    static func from(
        _ address: String,
        _ client: some TestClientProtocol,
        _ method: String,
        _ path: String,
        _ body: String? = nil
    ) async throws -> (status: Int, json: [String: Any], code: String?) {
        let port = try #require(client.port)
        let response = try await LoopbackHTTP.request(port: port, from: address, method: method, path: path, body: body)
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any] ?? [:]
        return (response.status, json, nil)
    }

    @Test func aStrangerCanNeitherTakeNorAnswerTheDevicesCommands() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("CMD-B", client: client)
            let queued = try await client.operatorJSON(
                .post,
                "/api/v1/devices/CMD-B/commands",
                #"{"action":"set_power","value":5000,"create":true}"#,
                server: test
            )
            let id = try #require(queued.json["command_id"] as? String)
            let taken = try await Self.from(Self.attacker, client, "GET", "/commands/CMD-B/poll")
            #expect(taken.status == 403)
            #expect((taken.json["error"] as? String)?.contains("address") == true)
            let fake = #"{"command_result":{"command_id":"\#(id)","status":"success"}}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/commands/CMD-B/result", fake).status == 403)
            var status = try await client.execute(uri: "/api/v1/commands/\(id)", method: .get, headers: test.operatorHeaders)
            #expect(status.json["status"] as? String == "pending", "nothing changed")

            // The device gets it, and a result from elsewhere still cannot complete it.
            let poll = try await client.execute(uri: "/commands/CMD-B/poll", method: .get)
            #expect(poll.json["count"] as? Int == 1)
            #expect(try await Self.from(Self.attacker, client, "POST", "/commands/CMD-B/result", fake).status == 403)
            #expect(try await client.postJSON("/commands/CMD-B/result", fake).status == .ok)
            status = try await client.execute(uri: "/api/v1/commands/\(id)", method: .get, headers: test.operatorHeaders)
            #expect(status.json["status"] as? String == "completed")
        }
    }

    @Test func aStrangerCanNeitherReadNorAcknowledgeAPendingConfiguration() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("CFG-B", client: client)
            let update = #"{"config_update":{"sampling_interval":10}}"#
            #expect(try await client.operatorJSON(.put, "/api/v1/devices/CFG-B/config/pending", update, server: test).status == .ok)
            #expect(try await Self.from(Self.attacker, client, "GET", "/config/CFG-B").status == 403)
            #expect(try await Self.from(Self.attacker, client, "POST", "/config/CFG-B/acknowledge", ConfigHTTPTests.ack).status == 403)
            // An acknowledgement must match what was sent: nothing was delivered yet, so there is nothing to acknowledge.
            #expect(try await client.postJSON("/config/CFG-B/acknowledge", ConfigHTTPTests.ack).status == .notFound)
            let poll = try await client.execute(uri: "/config/CFG-B", method: .get)
            #expect(poll.json["is_pending"] as? Bool == true)
            #expect(try await client.postJSON("/config/CFG-B/acknowledge", ConfigHTTPTests.ack).status == .ok)
            let history = try await client.execute(uri: "/api/v1/devices/CFG-B/config", method: .get, headers: test.operatorHeaders)
            #expect((history.json["running"] as? [String: Any])?["sampling_interval"] as? Int == 10)
        }
    }

    @Test func bootMessagesFromAStrangerAreHeldAndNeverApplied() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("BOOT-B", client: client)
            let real = #"{"device_id":"BOOT-B","device_name":"Real","firmware_version":"1.3.4","location":"Roof"}"#
            #expect(try await client.postJSON("/devices", real).status == .created)
            #expect(try await client.postJSON("/config/BOOT-B/current", ConfigHTTPTests.bootReport).status == .ok)

            let evil = #"{"device_id":"BOOT-B","device_name":"Evil","firmware_version":"6.6.6","location":"Nowhere"}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/devices", evil).status == 202)
            let report = #"{"sampling_interval":99,"registers":["Pac"]}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/config/BOOT-B/current", report).status == 202)
            let complete = #"{"version":"6.6.6","status":"success","timestamp":1}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/ota/BOOT-B/complete", complete).status == 202)
            #expect(test.server.boot.held(deviceID: "BOOT-B").count == 3)

            // The device goes on from its own address: its uploads do not confirm a stranger's messages.
            try await test.bind("BOOT-B", client: client)
            let device = try await client.execute(uri: "/api/v1/devices/BOOT-B", method: .get, headers: test.operatorHeaders)
            let record = device.json
            #expect(record["device_name"] as? String == "Real")
            #expect(record["firmware_version"] as? String == "1.3.4")
            #expect(record["location"] as? String == "Roof")
            #expect(record["bound_address"] as? String == "127.0.0.1")
            let config = try await client.execute(uri: "/api/v1/devices/BOOT-B/config", method: .get, headers: test.operatorHeaders)
            #expect((config.json["running"] as? [String: Any])?["sampling_interval"] as? Int == 5)
            let stream = try await test.server.store.ingestState(deviceID: "BOOT-B").stream
            #expect(stream.hypotheses.count == 2, "only the device's own boot report opened a reboot hypothesis")

            // After the hold window they are discarded and counted.
            test.clock.set(test.clock.now + 601_000)
            await test.server.boot.expire(nowMs: test.clock.now)
            #expect(test.server.boot.held(deviceID: "BOOT-B").isEmpty)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: test.operatorHeaders).body)
            #expect(metrics.contains(#"ecowatt_held_messages_total{kind="registration",outcome="discarded"} 1"#))
        }
    }

    @Test func aStrangerCannotKeepASilentDeviceOnline() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("LIVE-B", client: client)
            func status() async throws -> String? {
                let device = try await client.execute(uri: "/api/v1/devices/LIVE-B", method: .get, headers: test.operatorHeaders)
                return device.json["status"] as? String
            }
            #expect(try await status() == "online")
            // The device falls silent; a stranger polls and reports under its id, within and after the binding window.
            for silence: Int64 in [300_000, 7_200_000] {
                test.clock.set(test.clock.now + silence)
                _ = try await Self.from(Self.attacker, client, "GET", "/commands/LIVE-B/poll")
                _ = try await Self.from(Self.attacker, client, "GET", "/config/LIVE-B")
                _ = try await Self.from(Self.attacker, client, "GET", "/ota/check/LIVE-B?version=1.3.4")
                let energy = #"{"device_id":"LIVE-B","power_management":{"enabled":true}}"#
                _ = try await Self.from(Self.attacker, client, "POST", "/power/energy/LIVE-B", energy)
                #expect(try await status() == "offline", "after \(silence / 1000) s of silence")
            }
            // Its own next upload brings it back.
            try await test.bind("LIVE-B", client: client)
            #expect(try await status() == "online")
        }
    }

    @Test func aStreamOfHeldMessagesThatReplaceEachOtherKeepsMemoryBounded() async throws {
        let test = try await TestServer()
        try await test.run { _ in
            let fields = DeviceFields(deviceName: "Evil")
            for index in 0..<3_000 {
                let held = try await test.server.boot.registration(
                    deviceID: "HOLD-\(index % 3)",
                    fields: fields,
                    address: "10.0.0.9",
                    standing: .unbound,
                    nowMs: test.clock.now
                )
                #expect(held == nil)
            }
            let (messages, entries) = test.server.boot.bookkeeping
            #expect(messages == 3, "one registration per device and address")
            #expect(entries <= 2 * messages + 1024, "\(entries) entries for \(messages) messages")
        }
    }

    @Test func aStrangerCanNeitherStartReportNorAbortTheDevicesDownload() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install(vectors, keys: keys, into: test)
        try await test.run { client in
            var device = OTAHTTPTests.Device(id: "OTA-B", running: "1.0.0", keys: keys)
            try await test.bind(device.id, client: client)
            _ = try await OTAHTTPTests.deploy(vectors[1].version, to: [device.id], client: client, test: test, maxAttempts: 1)
            let info = try #require(try await device.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            let initiate = #"{"firmware_version":"\#(vectors[0].version)"}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/ota/initiate/OTA-B", initiate).status == 403)
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            _ = try await device.fetch(client, &receiver, until: 10)
            // A stranger's chunk request, failure report, other-version initiate and completion change nothing.
            let chunk = "/ota/chunk/OTA-B?version=\(receiver.version)&chunk=10"
            #expect(try await Self.from(Self.attacker, client, "GET", chunk).status == 403)
            let failed = #"{"phase":"failed","progress":20,"message":"Download failed - will retry on next cycle"}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/ota/OTA-B/progress", failed).status == 403)
            #expect(try await Self.from(Self.attacker, client, "POST", "/ota/initiate/OTA-B", initiate).status == 403)
            let complete = #"{"version":"\#(vectors[0].version)","status":"success"}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/ota/OTA-B/complete", complete).status == 202)
            // Not even the device's own address starts another version while this download runs.
            #expect(try await client.postJSON("/ota/initiate/OTA-B", initiate).status == .conflict)
            _ = try await device.fetch(client, &receiver)
            let report = try await device.install(client, receiver)
            #expect(report["outcome"] as? String == "success")
            #expect(try await device.checkForUpdate(client) == nil, "installed, never offered again")
        }
    }

    @Test func aCompletionFromANewAddressAfterAnOTARebootIsHeldThenConfirmedByTheFirstUpload() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install(vectors, keys: keys, into: test)
        try await test.run { client in
            var device = OTAHTTPTests.Device(id: "DHCP-1", running: "1.0.0", keys: keys)
            try await test.bind(device.id, client: client)
            _ = try await OTAHTTPTests.deploy(vectors[0].version, to: [device.id], client: client, test: test)
            let info = try #require(try await device.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            _ = try await device.fetch(client, &receiver)
            try await device.progress(client, "installing", 100, "Installing new firmware - Device will reboot")
            // The device reboots into the new image with a new address (DHCP): its boot messages are held.
            let newAddress = "127.0.0.3"
            let registration = #"{"device_id":"DHCP-1","firmware_version":"\#(receiver.version)"}"#
            #expect(try await Self.from(newAddress, client, "POST", "/devices", registration).status == 202)
            let complete = #"{"version":"\#(receiver.version)","status":"success","timestamp":1764300100}"#
            #expect(try await Self.from(newAddress, client, "POST", "/ota/DHCP-1/complete", complete).status == 202)
            #expect(try await Self.from(newAddress, client, "POST", "/config/DHCP-1/current", ConfigHTTPTests.bootReport).status == 202)
            // Its first upload from there confirms them, and binds the device to its new address.
            let upload = Uploads.body(device: "DHCP-1", nonce: 90_500)
            #expect(try await Self.from(newAddress, client, "POST", "/aggregated/DHCP-1", upload).status == 200)
            let status = try await client.execute(uri: "/api/v1/devices/DHCP-1/ota", method: .get, headers: test.operatorHeaders)
            #expect((status.json["session"] as? [String: Any])?["outcome"] as? String == "success")
            let record = try await client.execute(uri: "/api/v1/devices/DHCP-1", method: .get, headers: test.operatorHeaders)
            #expect(record.json["firmware_version"] as? String == receiver.version)
            #expect(record.json["bound_address"] as? String == newAddress)
            #expect(try await Self.from(newAddress, client, "GET", "/commands/DHCP-1/poll").status == 200)
            #expect(try await client.execute(uri: "/commands/DHCP-1/poll", method: .get).status == .forbidden, "the old address")
        }
    }

    @Test func aPoisonedNonceIsRefusedAndTheDeviceGoesOn() async throws {
        let test = try await TestServer()
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            #expect(try await client.postJSON("/aggregated/NONCE-B", Uploads.body(device: "NONCE-B", nonce: 11_001)).status == .ok)
            let poison = try await client.postJSON("/aggregated/NONCE-B", Uploads.body(device: "NONCE-B", nonce: 4_294_967_295))
            #expect(poison.status == .unauthorized)
            #expect(poison.headers[ErrorCode.header] == "nonce", "a replay and a jump look alike from outside")
            #expect(!String(buffer: poison.body).contains("11001"), "the stored nonce is not revealed")
            // The device's next upload is accepted: its nonce was not moved.
            #expect(try await client.postJSON("/aggregated/NONCE-B", Uploads.body(device: "NONCE-B", nonce: 11_002)).status == .ok)
            // J0 (1024) right after an upload; two more per second since.
            #expect(try await client.postJSON("/aggregated/NONCE-B", Uploads.body(device: "NONCE-B", nonce: 13_000)).status == .unauthorized)
            test.clock.set(test.clock.now + 1_000_000)
            #expect(try await client.postJSON("/aggregated/NONCE-B", Uploads.body(device: "NONCE-B", nonce: 13_000)).status == .ok)
            let device = try await client.execute(uri: "/api/v1/devices/NONCE-B", method: .get, headers: test.operatorHeaders)
            let record = device.json
            #expect(record["nonce_jumps_refused"] as? Int == 2)
            #expect(record["last_refused_nonce"] as? Int == 13_000)
            // After an operator reset no allowance applies (the device may have been re-flashed at any nonce).
            _ = try await client.execute(uri: "/api/v1/devices/NONCE-B/nonce", method: .delete, headers: test.operatorHeaders)
            #expect(try await client.postJSON("/aggregated/NONCE-B", Uploads.body(device: "NONCE-B", nonce: 3_000_000_000)).status == .ok)
        }
    }

    @Test func aFirstBootDeviceGetsNoCommandBeforeItsFirstUpload() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let queued = try await client.operatorJSON(
                .post,
                "/api/v1/devices/FRESH-B/commands",
                #"{"action":"set_power","value":5000,"create":true}"#,
                server: test
            )
            #expect(queued.status == .created)
            #expect(try await client.execute(uri: "/commands/FRESH-B/poll", method: .get).json["count"] as? Int == 0)
            #expect(try await Self.from(Self.attacker, client, "GET", "/commands/FRESH-B/poll").json["count"] as? Int == 0)
            try await test.bind("FRESH-B", client: client)
            #expect(try await client.execute(uri: "/commands/FRESH-B/poll", method: .get).json["count"] as? Int == 1)
        }
    }

    @Test func bindingOffRestoresTheOpenBehaviour() async throws {
        let test = try await TestServer(deviceBinding: "off")
        try await test.run { client in
            try await test.bind("OPEN-B", client: client)
            let queued = try await client.operatorJSON(
                .post,
                "/api/v1/devices/OPEN-B/commands",
                #"{"action":"set_power","value":5000,"create":true}"#,
                server: test
            )
            let id = try #require(queued.json["command_id"] as? String)
            #expect(try await Self.from(Self.attacker, client, "GET", "/commands/OPEN-B/poll").json["count"] as? Int == 1)
            let result = #"{"command_result":{"command_id":"\#(id)","status":"success"}}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/commands/OPEN-B/result", result).status == 200)
            let registration = #"{"device_id":"OPEN-B","device_name":"Anyone"}"#
            #expect(try await Self.from(Self.attacker, client, "POST", "/devices", registration).status == 201)
            #expect(try await Self.from(Self.attacker, client, "POST", "/devices", #"{"device_id":"NEW-OPEN"}"#).status == 201)
        }
    }
}
