import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 13: connections are limited and timed out. The real binary runs under a 256-descriptor limit; one client
/// address opens every connection it can, idle or sending its headers a byte at a time, and another address still gets
/// `/health` and an upload through long before any of those connections times out.
@Suite(.serialized) struct ConnectionLimitTests {
    /// `ecowatt serve` under `ulimit -n 256` (soft and hard, so the server cannot raise it) with short timeouts. The
    /// header and idle timeouts are long enough that a client starved by the flood (served only once a flood connection
    /// times out) is told apart from one slowed by a busy test run: served in up to 4 s there, where 3 s timeouts
    /// made a 2.5 s bound flaky.
    static func start(_ root: URL, port: Int) async throws -> ServerProcess {
        try await ServerProcess(
            root: root,
            port: port,
            extraArguments: [
                "--limit", "max_connections_per_address=32", "--limit", "header_timeout_seconds=8", "--limit",
                "body_timeout_seconds=3", "--limit", "idle_timeout_seconds=10",
            ],
            descriptorLimit: 256
        )
    }

    @Test func aFloodOfIdleAndSlowConnectionsFromOneAddressDoesNotStopAnother() async throws {
        let root = ProcessTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let port = LoopbackPort.free()
        let server = try await Self.start(root, port: port)
        #expect(server.log.contains("open-file limit") && server.log.contains("soft=256"))
        #expect(server.log.contains("max_connections lowered to fit the descriptor limit"))

        // The start-up probe's connection (from 127.0.0.1 too) must have left the per-address count first: it closes
        // at once, but the server sees that asynchronously (the flood below once got 31 slots instead of 32).
        try await Task.sleep(for: .milliseconds(300))
        // 127.0.0.1: as many connections as it can get, half idle, half sending a partial request head.
        var attack: [Int32] = []
        var slow: Set<Int32> = []
        defer { for fd in attack { close(fd) } }
        for index in 0..<400 {
            guard let fd = LoopbackHTTP.connect(port: port, from: "127.0.0.1") else { continue }
            if index % 2 == 1 {
                LoopbackHTTP.send(fd, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                slow.insert(fd)
            }
            attack.append(fd)
        }
        // The server closes the connections beyond the cap as it accepts them; under a loaded test run that takes
        // longer than 300 ms (it once still held 80), so wait up to 2 s (before the 8 s header timeout frees any).
        var held = attack
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(100))
            held = attack.filter { !LoopbackHTTP.isClosedByPeer($0) }
            if held.count <= 32 { break }
        }
        #expect(held.count == 32, "the per-address cap holds \(held.count) of \(attack.count) connections")

        // 127.0.0.2 is served at once, a read of the health check and a signed upload: well before the header timeout
        // (8 s) would free a slot if the attack starved it (the bound leaves room for a loaded CI machine).
        let clock = ContinuousClock()
        let start = clock.now
        let health = try await LoopbackHTTP.request(port: port, from: "127.0.0.2", path: "/health", timeoutSeconds: 5)
        #expect(health.status == 200)
        let upload = try await LoopbackHTTP.request(
            port: port,
            from: "127.0.0.2",
            method: "POST",
            path: "/aggregated/CONN-1",
            body: Uploads.body(device: "CONN-1", nonce: 11001),
            timeoutSeconds: 5
        )
        #expect(upload.status == 200)
        let served = clock.now - start
        print("ConnectionLimitTests: 127.0.0.2 got /health and an upload in \(served) beside 32 held connections")
        #expect(served < .seconds(6))

        // Heads sent a byte a second are cut at the header timeout, idle connections at the idle timeout.
        let heldSlow = held.filter { slow.contains($0) }
        #expect(!heldSlow.isEmpty)
        for _ in 0..<9 {
            try await Task.sleep(for: .seconds(1))
            for fd in heldSlow { LoopbackHTTP.send(fd, "a") }
        }
        #expect(heldSlow.allSatisfy { LoopbackHTTP.isClosedByPeer($0) }, "slow heads are closed after the header timeout")
        try await Task.sleep(for: .seconds(2.5))
        #expect(held.allSatisfy { LoopbackHTTP.isClosedByPeer($0) }, "idle connections are closed after the idle timeout")

        // A slow body is cut at the body timeout.
        let slowBody = try #require(LoopbackHTTP.connect(port: port, from: "127.0.0.3"))
        defer { close(slowBody) }
        LoopbackHTTP.send(slowBody, "POST /aggregated/CONN-2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"nonce\":")
        let sent = clock.now
        try await Task.sleep(for: .seconds(1.5))
        // Open before the body timeout (3 s). Timed from the send: in a loaded full run this test once took 25 s instead
        // of 10, and the 1.5 s sleep can end after the timeout has rightly closed the connection.
        let closedEarly = LoopbackHTTP.isClosedByPeer(slowBody) && clock.now - sent < .seconds(3)
        #expect(!closedEarly, "a slow body is not cut before the body timeout")
        try await Task.sleep(for: .seconds(2.5))
        #expect(LoopbackHTTP.isClosedByPeer(slowBody))

        let metrics = try await LoopbackHTTP.request(
            port: port,
            path: "/metrics",
            headers: ["Authorization": "Bearer \(try ProcessTests.operatorToken(root))"]
        )
        #expect(metrics.body.contains(#"ecowatt_connections_refused_total{reason="per_address"}"#))
        #expect(metrics.body.contains(#"ecowatt_connections_timed_out_total{phase="header"}"#))
        #expect(metrics.body.contains(#"ecowatt_connections_timed_out_total{phase="body"}"#))
        try await server.stop(signal: SIGTERM)
    }
}
