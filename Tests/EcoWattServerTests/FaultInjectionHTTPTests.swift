import EcoWattProtocol
import EcoWattServer
import FirmwareImage
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct FaultInjectionHTTPTests {
    @Test func disabledByDefault() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let inject = try await client.operatorJSON(.post, "/api/v1/faults/network", #"{"kind":"disconnect"}"#, server: test)
            #expect(inject.status == .forbidden)
            let selfTest = try await client.operatorJSON(
                .post,
                "/api/v1/faults/security-tests",
                #"{"test":"replay","device_id":"X"}"#,
                server: test
            )
            #expect(selfTest.status == .forbidden)
            let status = try await client.execute(uri: "/api/v1/faults", method: .get, headers: test.operatorHeaders)
            #expect(status.json["enabled"] as? Bool == false)
        }
    }

    @Test func networkFaultsHitDeviceRoutesOnly() async throws {
        let test = try await TestServer(faultInjection: true)
        try await test.run { client in
            func inject(_ body: String) async throws -> String {
                let response = try await client.operatorJSON(.post, "/api/v1/faults/network", body, server: test)
                #expect(response.status == .created, "\(String(buffer: response.body))")
                return response.json["fault_id"] as? String ?? ""
            }
            let disconnect = try await inject(
                #"{"kind":"disconnect","target_endpoint":"/commands","probability":1}"#
            )
            let poll = try await client.execute(uri: "/commands/NET-1/poll", method: .get)
            #expect(poll.status == .serviceUnavailable)
            #expect((poll.json["error"] as? String)?.contains("Injected") == true)
            // Operator routes and other prefixes are untouched.
            #expect(try await client.execute(uri: "/api/v1/stats/commands", method: .get, headers: test.operatorHeaders).status == .ok)
            #expect(try await client.execute(uri: "/config/NET-1", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            let cleared = try await client.execute(uri: "/api/v1/faults?fault_id=\(disconnect)", method: .delete, headers: test.operatorHeaders)
            #expect(cleared.json["cleared"] as? Int == 1)
            #expect(try await client.execute(uri: "/commands/NET-1/poll", method: .get).status == .ok)

            _ = try await inject(
                #"{"kind":"timeout","target_endpoint":"/config","delay_ms":150}"#
            )
            var start = ContinuousClock.now
            #expect(try await client.execute(uri: "/config/NET-1", method: .get).status == .gatewayTimeout)
            #expect(ContinuousClock.now - start >= .milliseconds(150))
            _ = try await client.execute(uri: "/api/v1/faults", method: .delete, headers: test.operatorHeaders)

            _ = try await inject(#"{"kind":"slow","target_endpoint":"all","delay_ms":200}"#)
            start = ContinuousClock.now
            #expect(try await client.execute(uri: "/config/NET-1", method: .get).status == .ok)
            #expect(ContinuousClock.now - start >= .milliseconds(200))
            let status = try await client.execute(uri: "/api/v1/faults", method: .get, headers: test.operatorHeaders)
            #expect(((status.json["network_faults"] as? [[String: Any]])?.first?["injected"] as? Int) == 1)

            // Probability 0 never fires; requests that do not fit are 422.
            _ = try await client.execute(uri: "/api/v1/faults", method: .delete, headers: test.operatorHeaders)
            _ = try await inject(#"{"kind":"disconnect","probability":0}"#)
            for _ in 0..<20 { #expect(try await client.execute(uri: "/commands/NET-1/poll", method: .get).status == .ok) }
            for bad in [
                #"{"kind":"explode"}"#, #"{"kind":"slow","target_endpoint":"/security"}"#, #"{"kind":"slow","probability":2}"#,
                #"{"meteor":true}"#,
            ] {
                #expect(try await client.operatorJSON(.post, "/api/v1/faults/network", bad, server: test).status == .unprocessableContent, "\(bad)")
            }
        }
    }

    @Test func otaFaultsMakeTheDeviceFailAtTheExpectedCheck() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys, faultInjection: true)
        try await OTAHTTPTests.install([vectors[0]], keys: keys, into: test)
        let version = vectors[0].version
        try await test.run { client in
            _ = try await OTAHTTPTests.deploy(version, to: nil, client: client, test: test)
            /// Downloads the offered image and returns where the device's checks fail (nil: verified).
            func attempt(_ deviceID: String) async throws -> DeviceFirmwareReceiver.Failure? {
                var device = OTAHTTPTests.Device(id: deviceID, running: "1.0.0", keys: keys)
                try await test.bind(device.id, client: client)  // a running device uploads
                let info = try #require(try await device.checkForUpdate(client))
                do {
                    var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
                    #expect(try await device.initiate(client, version: version).status == .ok)
                    _ = try await device.fetch(client, &receiver)
                    try receiver.verify(publicKey: keys.publicKey)
                    return nil
                } catch let failure as DeviceFirmwareReceiver.Failure {
                    return failure
                }
            }
            #expect(try await attempt("OTA-CLEAN") == nil)
            for (subtype, device, expected) in [
                ("bad_hash", "OTA-HASH", DeviceFirmwareReceiver.Failure.sha256),
                ("bad_signature", "OTA-SIG", .rsaPKCS1v15),
            ] {
                let body = #"{"kind":"\#(subtype)","device_id":"\#(device)"}"#
                #expect(try await client.operatorJSON(.post, "/api/v1/faults/ota", body, server: test).status == .created)
                #expect(try await attempt(device) == expected, "\(subtype)")
            }
            let corrupt = #"{"kind":"corrupt_chunk","device_id":"OTA-CHUNK","chunk":1}"#
            #expect(try await client.operatorJSON(.post, "/api/v1/faults/ota", corrupt, server: test).status == .created)
            let failure = try await attempt("OTA-CHUNK")
            #expect(failure != nil, "a corrupted chunk must not verify")
            // Only the targeted devices were affected.
            #expect(try await attempt("OTA-CLEAN-2") == nil)
        }
    }

    @Test func securitySelfTestsNeverTouchRealNonceState() async throws {
        let test = try await TestServer(faultInjection: true)
        test.clock.set(Uploads.exampleArrivalMs)
        try await test.run { client in
            #expect(try await client.postJSON("/aggregated/SELF-1", Uploads.body(device: "SELF-1", nonce: 11_000)).status == .ok)
            let statsBefore = try await client.execute(uri: "/api/v1/stats/security", method: .get, headers: test.operatorHeaders)
            for test_ in SecuritySelfTest.allCases {
                let response = try await client.operatorJSON(
                    .post,
                    "/api/v1/faults/security-tests",
                    #"{"test":"\#(test_.rawValue)","device_id":"SELF-1"}"#,
                    server: test
                )
                #expect(response.status == .ok)
                #expect(response.json["test_passed"] as? Bool == true, "\(test_.rawValue): \(response.json)")
                #expect(response.json["validation_succeeded"] as? Bool == false)
                #expect(response.json["sandboxed"] as? Bool == true)
            }
            // The device's next real upload is still accepted: its nonce state was not touched.
            #expect(try await client.postJSON("/aggregated/SELF-1", Uploads.body(device: "SELF-1", nonce: 11_001)).status == .ok)
            let statsAfter = try await client.execute(uri: "/api/v1/stats/security", method: .get, headers: test.operatorHeaders)
            let before = statsBefore.json as [String: Any]?
            let after = statsAfter.json as [String: Any]?
            #expect(after?["failed_validations"] as? Int == before?["failed_validations"] as? Int, "self-tests are not device traffic")
            #expect(after?["successful_validations"] as? Int == 2)
            let status = try await client.execute(uri: "/api/v1/faults", method: .get, headers: test.operatorHeaders)
            #expect((status.json["security_self_tests"] as? [Any])?.count == SecuritySelfTest.allCases.count)
        }
    }
}
