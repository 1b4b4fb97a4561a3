import EcoWattTestSupport
import Foundation
import Testing

/// Issue 14: the firmware's published fleet key is loud at every start, in `/ready` and in `/metrics`; a change of key
/// says how many devices it locks out. The real binary, restarted on one data directory.
@Suite(.serialized) struct FleetKeyTests {
    static func get(_ port: Int, _ path: String, _ root: URL) async throws -> String {
        let token = try ProcessTests.operatorToken(root)
        return try await LoopbackHTTP.request(port: port, path: path, headers: ["Authorization": "Bearer \(token)"]).body
    }

    @Test func thePublicDefaultKeyIsLoudAndAChangeOfKeyCountsTheDevicesItLocksOut() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        var port = LoopbackPort.free()
        var server = try await ServerProcess(root: root, port: port)
        #expect(try await server.post("/aggregated/KEY-1", Uploads.body(device: "KEY-1", nonce: 11001)) == 200)
        #expect(server.log.contains("the fleet key is the firmware's published default"))
        let ready = try await LoopbackHTTP.request(port: port, path: "/ready")
        #expect(ready.status == 200, "a warning, not a failure: a fleet on the default key works")
        #expect(ready.body.contains("public: the firmware's published default key"))
        #expect(try await Self.get(port, "/metrics", root).contains("ecowatt_fleet_key_public 1"))
        #expect(try await server.stop(signal: SIGTERM) == 0)

        // A private key: the device that signs with the default one is refused, and the start says so.
        let privateKey = String(repeating: "5a", count: 32)
        port = LoopbackPort.free()
        server = try await ServerProcess(root: root, port: port, environment: ["ECOWATT_FLEET_KEY": privateKey])
        #expect(server.log.contains("the fleet key changed since the last start"))
        #expect(server.log.contains("devices_on_previous_key=1"))
        #expect(!server.log.contains("published default"))
        #expect(try await LoopbackHTTP.request(port: port, path: "/ready").body.contains("private (fingerprint"))
        #expect(try await Self.get(port, "/metrics", root).contains("ecowatt_fleet_key_public 0"))
        #expect(try await server.post("/aggregated/KEY-1", Uploads.body(device: "KEY-1", nonce: 11002)) == 401)
        #expect(try await server.stop(signal: SIGTERM) == 0)

        // The same key again: nothing changed, nothing to say.
        port = LoopbackPort.free()
        server = try await ServerProcess(root: root, port: port, environment: ["ECOWATT_FLEET_KEY": privateKey])
        #expect(!server.log.contains("fleet key changed"))
        #expect(try await server.stop(signal: SIGTERM) == 0)
    }
}
