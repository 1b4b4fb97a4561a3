import EcoWattProtocol
import EcoWattServer
import Foundation
import HummingbirdTesting
import Testing

@Suite struct DeviceHTTPTests {
    static let registration =
        #"{"device_id":"ESP32_001","device_name":"EcoWatt Smart Monitor","firmware_version":"1.3.4","location":"Default Location","description":"EcoWatt Energy Monitor"}"#

    @Test func bootRegistrationAndOperatorCRUD() async throws {
        let test = try await TestServer()
        try await test.run { client in
            // Boot self-test first: the device registers only after a 200 here.
            #expect(try await client.execute(uri: "/ota/status", method: .get).status == .ok)
            // A first boot: no verified upload yet, so the registration is held until the first upload confirms it.
            let held = try await client.postJSON("/devices", Self.registration)
            #expect(held.status == .accepted)
            #expect(held.json["held"] as? Bool == true)
            #expect(try ArduinoJSONPool.bytes(String(buffer: held.body)) <= 460)
            #expect(try await client.execute(uri: "/api/v1/devices/ESP32_001", method: .get, headers: test.operatorHeaders).status == .notFound)
            try await test.bind("ESP32_001", client: client)
            // Bound now: a registration takes effect at once.
            let known = try await client.postJSON("/devices", Self.registration)
            #expect(known.status == .ok)
            #expect(try ArduinoJSONPool.bytes(String(buffer: known.body)) <= 460)
            #expect(try await client.postJSON("/devices", #"{"device_name":"x"}"#).status == .badRequest)
            #expect(try await client.postJSON("/devices", "not json").status == .badRequest)

            let list = try await client.execute(uri: "/api/v1/devices", method: .get, headers: test.operatorHeaders)
            let device = try #require((list.json["items"] as? [[String: Any]])?.first)
            #expect(device["device_id"] as? String == "ESP32_001")
            #expect(device["firmware_version"] as? String == "1.3.4")
            #expect(device["status"] as? String == "online")

            let renamed = try await client.operatorJSON(.patch, "/api/v1/devices/ESP32_001", #"{"location":"Roof"}"#, server: test)
            #expect(renamed.json["location"] as? String == "Roof")
            #expect(try await client.operatorJSON(.patch, "/api/v1/devices/NOPE", #"{"location":"x"}"#, server: test).status == .notFound)

            // Offline once silent for longer than device_offline_after_seconds (120 s by default).
            test.clock.set(test.clock.now + 121_000)
            let later = try await client.execute(uri: "/api/v1/devices/ESP32_001", method: .get, headers: test.operatorHeaders)
            #expect(later.json["status"] as? String == "offline")
            // Any device request (a poll) brings it back online.
            _ = try await client.execute(uri: "/commands/ESP32_001/poll", method: .get)
            let polled = try await client.execute(uri: "/api/v1/devices/ESP32_001", method: .get, headers: test.operatorHeaders)
            #expect(polled.json["status"] as? String == "online")

            #expect(try await client.operatorJSON(.delete, "/api/v1/devices/ESP32_001", nil, server: test).status == .noContent)
            #expect(try await client.execute(uri: "/api/v1/devices/ESP32_001", method: .get, headers: test.operatorHeaders).status == .notFound)
            #expect(try await client.execute(uri: "/api/v1/devices", method: .get).status == .unauthorized)
        }
    }

    @Test func lastSeenIsFlushedForKnownDevicesOnly() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await test.bind("POLLER", client: client)
            test.clock.set(test.clock.now + 30_000)
            _ = try await client.execute(uri: "/commands/POLLER/poll", method: .get)
            // An unregistered id (a scanner) must not create a registry entry.
            _ = try await client.execute(uri: "/commands/RANDOM-SCANNER/poll", method: .get)
            // The periodic flush may be writing an older time right now: wait for the poll's time to be stored.
            await test.server.activity.flush()
            var stored = try await test.server.devices.device("POLLER")
            for _ in 0..<30 where stored?.lastSeenMs != test.clock.now {
                try await Task.sleep(for: .milliseconds(100))
                await test.server.activity.flush()
                stored = try await test.server.devices.device("POLLER")
            }
            #expect(stored?.lastSeenMs == test.clock.now)
            #expect(try await test.server.devices.device("RANDOM-SCANNER") == nil)
        }
    }
}
