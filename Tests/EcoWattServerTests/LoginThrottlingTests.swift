import AsyncHTTPClient
import EcoWattServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Login throttling and the bounded hashing queue (issue 19): per pair and per address back-off, refusals answered
/// late, and a login flood that leaves ingest its throughput.
@Suite struct LoginThrottlingTests {
    @Test func aFloodOfAddressesKeepsTheLoginThrottleWithinItsCapacityAndTheNewestBlocked() {
        var policy = LoginThrottle.Policy()
        policy.freePerPair = 0
        policy.freePerAddress = 0
        policy.capacity = 10
        let throttle = LoginThrottle(policy: policy)
        let addresses = (0..<100).map { "10.0.0.\($0)" }
        for (index, address) in addresses.enumerated() { throttle.failed(user: "pat", address: address, nowMs: Int64(index)) }
        // Every back-off (1 s) still runs at 100 ms: an address not blocked any more was dropped by the cap.
        let blocked = addresses.filter { throttle.retryAfter(user: "pat", address: $0, nowMs: 100) != nil }
        #expect((9...10).contains(blocked.count), "\(blocked.count) addresses kept")
        #expect(blocked == Array(addresses.suffix(blocked.count)), "the newest stay: \(blocked)")
    }

    @Test func triesRefusedForAFullHashingQueueBackOffTheirAddressButNotItsPairs() {
        var policy = LoginThrottle.Policy()
        policy.freePerAddress = 3
        let throttle = LoginThrottle(policy: policy)
        for ms in 0..<3 { throttle.refused(address: "10.0.0.1", nowMs: Int64(ms)) }
        #expect(throttle.retryAfter(user: "pat", address: "10.0.0.1", nowMs: 3) == nil, "free tries first")
        throttle.refused(address: "10.0.0.1", nowMs: 3)
        #expect(throttle.retryAfter(user: "anyone", address: "10.0.0.1", nowMs: 4) == 1, "the address backs off for any user")
        #expect(throttle.retryAfter(user: "pat", address: "10.0.0.2", nowMs: 4) == nil, "other addresses do not")
        // The pair learnt nothing: once the address's back-off ends, pat is not behind on her own count.
        #expect(throttle.retryAfter(user: "pat", address: "10.0.0.1", nowMs: 1_004) == nil)
    }

    @Test func loginsAreThrottledPerUserAndAddressAndASuccessClearsIt() async throws {
        let test = try await TestServer()
        try await test.run { client in
            try await client.createUser("pat", role: "viewer", server: test)
            try await client.createUser("quinn", role: "viewer", server: test)
            let wrong = #"{"name":"pat","password":"not the password at all"}"#
            for _ in 1...6 {
                let response = try await client.postJSON("/api/v1/auth/login", wrong)
                #expect(response.status == .unauthorized && response.headers[ErrorCode.header] == "invalid_credentials")
            }
            var response = try await client.postJSON("/api/v1/auth/login", wrong)
            #expect(response.status == .tooManyRequests)
            #expect(response.headers[.retryAfter].flatMap(Int.init).map { $0 >= 1 } == true)
            // Even the right password waits: the pair is backing off.
            response = try await client.postJSON("/api/v1/auth/login", #"{"name":"pat","password":"\#(AccountsHTTPTests.password)"}"#)
            #expect(response.status == .tooManyRequests)
            // Another user from the same address is not locked out by pat's failures.
            _ = try await client.login("quinn")
            // After the back-off the right password works and clears the pair.
            test.clock.set(test.clock.now + 5_000)
            _ = try await client.login("pat")
            response = try await client.postJSON("/api/v1/auth/login", wrong)
            #expect(response.status == .unauthorized, "a fresh count after the success")
            // Unknown users fail the same way (and cost a hash too).
            response = try await client.postJSON("/api/v1/auth/login", #"{"name":"nobody","password":"whatever it is 1"}"#)
            #expect(response.status == .unauthorized && response.headers[ErrorCode.header] == "invalid_credentials")
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: test.operatorHeaders)
            let text = String(buffer: metrics.body)
            #expect(text.contains(#"ecowatt_logins_total{outcome="throttled"} 2"#))
            #expect(text.contains(#"ecowatt_logins_total{outcome="succeeded"} 2"#))
            // Failed logins are audited with the claimed name; throttled ones are not (a flood must not grow the trail).
            let audit = try await client.execute(uri: "/api/v1/audit?action=login&limit=1000", method: .get, headers: test.operatorHeaders)
            let entries = try #require(audit.json["items"] as? [[String: Any]])
            #expect(entries.filter { $0["outcome"] as? String == "401" }.count == 8)
            #expect(entries.filter { $0["outcome"] as? String == "200" }.count == 2)
            #expect(!entries.contains { $0["outcome"] as? String == "429" })
            #expect(entries.contains { $0["actor"] as? String == "login:pat" && $0["body_digest"] as? String == "redacted" })
        }
    }

    /// A client that sends its next try as soon as it has the answer is slowed by the refusal delay: a throttled login
    /// is answered no sooner than `login_refusal_delay_ms`, and never later than its `Retry-After`.
    @Test func aRefusedLoginIsAnsweredAfterTheRefusalDelayButWithinItsRetryAfter() async throws {
        for (delayMs, earliest, latest) in [(600, 0.6, 10.0), (5_000, 0.9, 4.0)] {
            let test = try await TestServer(settings: ["login_refusal_delay_ms": delayMs])
            try await test.run { client in
                try await client.createUser("tess", role: "viewer", server: test)
                let wrong = #"{"name":"tess","password":"not the password at all"}"#
                for _ in 1...6 { #expect(try await client.postJSON("/api/v1/auth/login", wrong).status == .unauthorized) }
                let clock = ContinuousClock()
                let start = clock.now
                let response = try await client.postJSON("/api/v1/auth/login", wrong)
                let elapsed = clock.now - start
                #expect(response.status == .tooManyRequests)
                // The first back-off is 1 s: the 5 s delay is cut to it.
                #expect(response.headers[.retryAfter] == "1")
                #expect(elapsed >= .seconds(earliest), "delay \(delayMs) ms: answered after \(elapsed)")
                #expect(elapsed < .seconds(latest), "delay \(delayMs) ms: answered after \(elapsed)")
            }
        }
    }

    /// bcrypt runs on one thread with a bounded queue: a flood of logins is answered 429 beyond it (after the refusal
    /// delay, before any database read), and uploads sent meanwhile are all accepted.
    @Test func aLoginFloodIsRefusedBeyondTheQueueAndUploadsKeepFlowing() async throws {
        // No rest after a hash (share 100): the queue is under test here, and beside a busy test run (at nice 10) each
        // admitted debug-build hash can take tens of seconds of wall time.
        let test = try await TestServer(settings: ["password_max_queued": 2, "password_cost": 12, "password_hash_share": 100])
        test.clock.followWallClock()
        try await test.run { client in
            // Unknown users, so that no hash is needed before the flood: each login costs a hash all the same.
            // Many connections at once (the test client is one connection, one request at a time).
            let port = try #require(client.port)
            let flood = Task {
                try await withThrowingTaskGroup(of: UInt.self) { group in
                    for i in 0..<24 {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/auth/login")
                            request.method = .POST
                            request.headers.add(name: "Content-Type", value: "application/json")
                            request.body = .bytes(ByteBuffer(string: #"{"name":"flood\#(i)","password":"wrong password here"}"#))
                            return try await HTTPClient.shared.execute(request, timeout: .seconds(300)).status.code
                        }
                    }
                    return try await group.reduce(into: [UInt]()) { $0.append($1) }
                }
            }
            var accepted = 0
            for nonce in UInt32(11_001)..<11_021 {
                let response = try await client.postJSON("/aggregated/FLOOD-1", Uploads.body(device: "FLOOD-1", nonce: nonce))
                if response.status == .ok { accepted += 1 }
            }
            let statuses = try await flood.value
            #expect(accepted == 20, "every upload during the flood is accepted")
            #expect(statuses.filter { $0 == 429 }.count >= 10, "beyond one hashing and two waiting, logins are refused")
            #expect(statuses.allSatisfy { $0 == 429 || $0 == 401 }, "\(statuses)")
        }
    }
}
