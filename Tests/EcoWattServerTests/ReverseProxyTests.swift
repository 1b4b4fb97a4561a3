import EcoWattTestSupport
import Foundation
import Testing

/// Issue 14: behind a reverse proxy (a real HAProxy), a device is bound to the address the proxy saw, taken from the
/// proxy's `X-Forwarded-For` only when the connection comes from a configured trusted proxy.
@Suite(.enabled(if: HAProxy.isInstalled, "needs haproxy (scripts/install-deps.sh haproxy)"))
struct ReverseProxyTests {
    @Test func aDeviceBehindAProxyIsBoundToTheAddressTheProxySawAndForgedHeadersAreIgnored() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let server = try await ServerProcess(root: root, port: port, environment: ["ECOWATT_TRUSTED_PROXIES": "127.0.0.1"])
        let proxy = try HAProxy(backendPort: port)
        defer { proxy.stop() }
        let operatorHeaders = ["Authorization": "Bearer \(try ProcessTests.operatorToken(root))"]

        // The device (127.0.0.2) uploads through the proxy: it is bound to 127.0.0.2, not to the proxy.
        let upload = try await LoopbackHTTP.request(
            port: proxy.port,
            from: "127.0.0.2",
            method: "POST",
            path: "/aggregated/PX-1",
            body: Uploads.body(device: "PX-1", nonce: 11001)
        )
        #expect(upload.status == 200)
        let device = try await LoopbackHTTP.request(port: port, path: "/api/v1/devices/PX-1", headers: operatorHeaders)
        #expect(device.body.contains(#""bound_address":"127.0.0.2""#), "\(device.body)")
        let queued = try await LoopbackHTTP.request(
            port: port,
            method: "POST",
            path: "/api/v1/devices/PX-1/commands",
            body: #"{"action":"set_power","value":5000}"#,
            headers: operatorHeaders.merging(["Content-Type": "application/json"]) { $1 }
        )
        #expect(queued.status == 201)

        // A stranger (127.0.0.3) claims the device's address: directly (not a trusted proxy, the header is ignored)
        // and through the proxy (which appends the address it saw).
        let forged = ["X-Forwarded-For": "127.0.0.2"]
        let direct = try await LoopbackHTTP.request(port: port, from: "127.0.0.3", path: "/commands/PX-1/poll", headers: forged)
        #expect(direct.status == 403)
        let proxied = try await LoopbackHTTP.request(
            port: proxy.port,
            from: "127.0.0.3",
            path: "/commands/PX-1/poll",
            headers: forged
        )
        #expect(proxied.status == 403)

        // The device, through the proxy, gets its command.
        let poll = try await LoopbackHTTP.request(port: proxy.port, from: "127.0.0.2", path: "/commands/PX-1/poll")
        #expect(poll.status == 200)
        #expect(poll.body.contains(#""count":1"#), "\(poll.body)")
        #expect(try await server.stop(signal: SIGTERM) == 0)
    }
}
