import Crypto
import EcoWattProtocol
import EcoWattSQLite
import EcoWattServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Device credentials (issue 19): provisioning, rotation under live uploads, revocation, `device_admission = known`.
@Suite struct DeviceCredentialsHTTPTests {
    static func key(_ response: TestResponse) throws -> SymmetricKey {
        let hex = try #require(response.json["key_hex"] as? String)
        return SymmetricKey(data: try #require(HexCoding.decode(hex)))
    }

    static func packets(_ test: TestServer, _ device: String) throws -> Int {
        try DatabaseInspector(test.server.database).packets(deviceID: device).count
    }

    @Test func aProvisionedDeviceSignsWithItsOwnKeyAndTheSnippetHoldsIt() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let response = try await client.operatorJSON(.post, "/api/v1/devices/PROV-1/credentials", nil, server: test)
            #expect(response.status == .created)
            let key = try Self.key(response)
            let hex = try #require(response.json["key_hex"] as? String)
            let snippet = try #require(response.json["security_cpp"] as? String)
            #expect(snippet.contains("const uint8_t SecurityLayer::PSK_HMAC[32] = {"))
            let bytes = try Regex(#"0x([0-9a-f]{2})"#)
            #expect(snippet.matches(of: bytes).map { String($0.output[1].substring!) }.joined() == hex, "the snippet is the key")
            #expect(try await client.operatorJSON(.get, "/api/v1/devices/PROV-1", nil, server: test).json["admission"] as? String == "operator")
            // The fleet key no longer signs for it; its own key does.
            var upload = try await client.postJSON("/aggregated/PROV-1", Uploads.body(device: "PROV-1", nonce: 11_001))
            #expect(upload.status == .unauthorized)
            upload = try await client.postJSON("/aggregated/PROV-1", Uploads.body(device: "PROV-1", nonce: 11_002, key: key))
            #expect(upload.status == .ok)
            // Provisioning again needs `replace`; the state never shows the key.
            #expect(try await client.operatorJSON(.post, "/api/v1/devices/PROV-1/credentials", "{}", server: test).status == .conflict)
            let state = try await client.operatorJSON(.get, "/api/v1/devices/PROV-1/credentials", nil, server: test)
            let fingerprint = DeviceCredentialService.fingerprint(try #require(HexCoding.decode(hex)))
            #expect(state.json["own_key"] as? Bool == true && state.json["key_fingerprint"] as? String == fingerprint)
            #expect(!String(buffer: state.body).contains(hex))
        }
    }

    /// The device uploads without pause while the operator issues the next key and its new build starts signing with
    /// it: no upload is refused; the first one under the next key retires the current key (audited).
    @Test func aKeyRotationUnderLiveUploadsRefusesNoUpload() async throws {
        let test = try await TestServer()
        test.clock.followWallClock()
        try await test.run { client in
            let provisioned = try await client.operatorJSON(.post, "/api/v1/devices/ROT-1/credentials", nil, server: test)
            let current = try Self.key(provisioned)
            let rotation = Task {
                try await Task.sleep(for: .milliseconds(50))
                return try await client.operatorJSON(.post, "/api/v1/devices/ROT-1/credentials/next", nil, server: test)
            }
            var statuses: [HTTPResponse.Status] = []
            var next: SymmetricKey?
            var switchedAt: UInt32?
            for nonce in UInt32(11_001)...11_060 {
                // The new build flashes some uploads after the next key was issued.
                if next == nil, nonce >= 11_030 {
                    let issued = try await rotation.value
                    #expect(issued.status == .created)
                    next = try Self.key(issued)
                    switchedAt = nonce
                }
                let response = try await client.postJSON("/aggregated/ROT-1", Uploads.body(device: "ROT-1", nonce: nonce, key: next ?? current))
                statuses.append(response.status)
            }
            #expect(statuses.allSatisfy { $0 == .ok }, "\(statuses.filter { $0 != .ok })")
            #expect(switchedAt != nil)
            let state = try await client.operatorJSON(.get, "/api/v1/devices/ROT-1/credentials", nil, server: test)
            #expect(state.json["next_key_pending"] as? Bool == false)
            #expect(state.json["key_fingerprint"] as? String == DeviceCredentialService.fingerprint(next!.withUnsafeBytes { Array($0) }))
            // The old key is retired.
            let old = try await client.postJSON("/aggregated/ROT-1", Uploads.body(device: "ROT-1", nonce: 11_061, key: current))
            #expect(old.status == .unauthorized)
            let audit = try await client.execute(uri: "/api/v1/audit?action=deviceKeyRotated", method: .get, headers: test.operatorHeaders)
            let items = try #require(audit.json["items"] as? [[String: Any]])
            #expect(items.count == 1 && items.first?["actor"] as? String == "device:ROT-1")
            #expect(try Self.packets(test, "ROT-1") == 60)
        }
    }

    @Test func aRevokedDeviceIsRefusedAndNothingOfItIsStored() async throws {
        let test = try await TestServer()
        try await test.run { client in
            #expect(try await client.postJSON("/aggregated/REV-1", Uploads.body(device: "REV-1", nonce: 11_001)).status == .ok)
            let revoked = try await client.operatorJSON(.post, "/api/v1/devices/REV-1/credentials/revoke", nil, server: test)
            #expect(revoked.status == .ok && revoked.json["revoked_at"] != nil)
            let refused = try await client.postJSON("/aggregated/REV-1", Uploads.body(device: "REV-1", nonce: 11_002))
            #expect(refused.status == .unauthorized && refused.headers[ErrorCode.header] == "revoked")
            #expect(try Self.packets(test, "REV-1") == 1, "nothing of the refused upload is stored")
            let device = try await client.operatorJSON(.get, "/api/v1/devices/REV-1", nil, server: test)
            #expect(device.json["upload_count"] as? Int == 1)
            // Provisioned again (with `replace`), it uploads with its new key.
            let again = try await client.operatorJSON(.post, "/api/v1/devices/REV-1/credentials", #"{"replace":true}"#, server: test)
            #expect(again.status == .created)
            let upload = try await client.postJSON("/aggregated/REV-1", Uploads.body(device: "REV-1", nonce: 11_003, key: try Self.key(again)))
            #expect(upload.status == .ok)
            // Unknown devices: 404.
            #expect(try await client.operatorJSON(.post, "/api/v1/devices/NOBODY/credentials/revoke", nil, server: test).status == .notFound)
        }
    }

    @Test func knownAdmissionRefusesUnknownIdsListsThemAsPendingAndAcceptsThem() async throws {
        let test = try await TestServer(deviceAdmission: "known")
        try await test.run { client in
            for nonce in UInt32(11_001)...11_002 {
                let refused = try await client.postJSON("/aggregated/NEW-1", Uploads.body(device: "NEW-1", nonce: nonce))
                #expect(refused.status == .forbidden && refused.headers[ErrorCode.header] == "not_admitted")
            }
            #expect(try Self.packets(test, "NEW-1") == 0)
            let pending = try await client.operatorJSON(.get, "/api/v1/devices?admission=pending", nil, server: test)
            let items = try #require(pending.json["items"] as? [[String: Any]])
            #expect(items.count == 1 && items[0]["device_id"] as? String == "NEW-1" && items[0]["refused_uploads"] as? Int == 2)
            #expect(items[0]["first_seen"] != nil && items[0]["last_seen"] != nil)
            let accepted = try await client.operatorJSON(.post, "/api/v1/devices/NEW-1/accept", nil, server: test)
            #expect(accepted.status == .ok && accepted.json["admission"] as? String == "operator")
            #expect(try await client.postJSON("/aggregated/NEW-1", Uploads.body(device: "NEW-1", nonce: 11_003)).status == .ok)
            // A provisioned device is admitted from its first upload; a device created by an operator too.
            let provisioned = try await client.operatorJSON(.post, "/api/v1/devices/NEW-2/credentials", nil, server: test)
            let upload = try await client.postJSON("/aggregated/NEW-2", Uploads.body(device: "NEW-2", nonce: 11_001, key: try Self.key(provisioned)))
            #expect(upload.status == .ok)
            _ = try await client.operatorJSON(.post, "/api/v1/devices", #"{"device_id":"NEW-3"}"#, server: test)
            #expect(try await client.postJSON("/aggregated/NEW-3", Uploads.body(device: "NEW-3", nonce: 11_001)).status == .ok)
            #expect(try await client.operatorJSON(.post, "/api/v1/devices/NEVER/accept", nil, server: test).status == .notFound)
        }
    }
}
