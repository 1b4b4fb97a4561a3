import AsyncHTTPClient
import EcoWattProtocol
import EcoWattServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The dashboard's live stream, `GET /api/v1/events` (issue 20).
@Suite struct EventStreamTests {
    /// Reads a whole stream (it ends after `max_seconds`) with its own connection; `seen` is told once the text
    /// read so far contains `marker`.
    static func read(
        port: Int,
        query: String,
        headers: [(String, String)],
        marker: String? = nil,
        seen: AsyncStream<Void>.Continuation? = nil
    ) async throws -> (status: UInt, text: String) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/events?\(query)")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        var text = ""
        for try await chunk in response.body {
            text += String(buffer: chunk)
            if let marker, text.contains(marker) { seen?.yield() }
        }
        seen?.finish()
        return (response.status.code, text)
    }

    static func events(_ text: String, _ name: String) -> [String] {
        text.components(separatedBy: "\n\n").filter { $0.hasPrefix("event: \(name)\n") }
    }

    @Test func aStreamSendsWhatChangedAndEndsOnTime() async throws {
        let test = try await TestServer()
        test.clock.followWallClock()
        try await test.run { client in
            let port = try #require(client.port)
            #expect(try await client.postJSON("/aggregated/LIVE-1", Uploads.body(device: "LIVE-1", nonce: 11_001)).status == .ok)
            let token = [("Authorization", "Bearer \(test.server.operatorToken)")]
            let (seen, continuation) = AsyncStream.makeStream(of: Void.self)
            let started = ContinuousClock.now
            let stream = Task {
                try await Self.read(port: port, query: "device_id=LIVE-1&max_seconds=15", headers: token, marker: "event: sample", seen: continuation)
            }
            // The second upload once the stream has sent the first sample (however slow the machine is).
            for await _ in seen { break }
            #expect(try await client.postJSON("/aggregated/LIVE-1", Uploads.body(device: "LIVE-1", nonce: 11_002)).status == .ok)
            let (status, text) = try await stream.value
            #expect(status == 200)
            #expect(ContinuousClock.now - started < .seconds(25), "the stream ends after max_seconds (15 s), give or take a tick")
            let samples = Self.events(text, "sample")
            #expect(samples.count == 2, "the first sample, then the new one: \(text)")
            #expect(Self.events(text, "summary").count >= 2, "the counts changed with the upload")
            #expect(Self.events(text, "commands").count == 1, "commands did not change: sent once")
            let payload = try #require(samples.last?.split(separator: "\n").last?.dropFirst("data: ".count))
            #expect(try JSONParser.parse(Array(payload.utf8))["timestamp_ms"]?.intValue != nil)
        }
    }

    @Test func streamsAreBoundedAndNeedCredentials() async throws {
        let test = try await TestServer(settings: ["max_event_streams": 1])
        try await test.run { client in
            let port = try #require(client.port)
            let token = [("Authorization", "Bearer \(test.server.operatorToken)")]
            #expect(try await Self.read(port: port, query: "max_seconds=1", headers: []).status == 401)
            let (seen, continuation) = AsyncStream.makeStream(of: Void.self)
            let first = Task {
                try await Self.read(port: port, query: "max_seconds=4", headers: token, marker: "event: summary", seen: continuation)
            }
            for await _ in seen { break }
            let second = try await Self.read(port: port, query: "max_seconds=1", headers: token)
            #expect(second.status == 429 && second.text.contains("At most 1 live streams"))
            #expect(try await first.value.status == 200)
            #expect(try await Self.read(port: port, query: "max_seconds=1", headers: token).status == 200, "a closed stream frees its place")
            #expect(try await Self.read(port: port, query: "max_seconds=0", headers: token).status == 400)
        }
    }

    @Test func loggingOutEndsTheSessionsStream() async throws {
        let test = try await TestServer()
        test.clock.followWallClock()
        try await test.run { client in
            let port = try #require(client.port)
            try await client.createUser("lena", role: "viewer", server: test)
            let session = try await client.login("lena")
            let (seen, continuation) = AsyncStream.makeStream(of: Void.self)
            let stream = Task {
                try await Self.read(
                    port: port,
                    query: "max_seconds=30",
                    headers: [("Cookie", session.cookie)],
                    marker: "event: summary",
                    seen: continuation
                )
            }
            for await _ in seen { break }
            let started = ContinuousClock.now
            #expect(try await client.execute(uri: "/api/v1/auth/logout", method: .post, headers: session.headers).status == .noContent)
            let (status, text) = try await stream.value
            #expect(status == 200 && Self.events(text, "end").count == 1, "\(text)")
            #expect(ContinuousClock.now - started < .seconds(15), "ended at the next credential check, not after max_seconds")
        }
    }
}
