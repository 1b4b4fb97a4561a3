import AsyncHTTPClient
import CompressNIO
import EcoWattProtocol
import EcoWattServer
import FirmwareImage
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// What went wrong with devices (security events, decode failures, failed updates), the fleet-wide command list, and
/// the pushes that carry them to the dashboard (issue 20).
@Suite struct DeviceEventsHTTPTests {
    static func badMAC(_ device: String, nonce: UInt32) -> String {
        Uploads.body(device: device, nonce: nonce).replacingOccurrences(of: #""mac":""#, with: #""mac":"0"#)
    }

    @Test func refusedUploadsAreListedPerDeviceCountedPerMinuteAndFlagOnlyKnownDevices() async throws {
        let test = try await TestServer()
        try await test.run { client in
            #expect(try await client.postJSON("/aggregated/SEC-1", Uploads.body(device: "SEC-1", nonce: 11_001)).status == .ok)
            #expect(try await client.postJSON("/aggregated/SEC-1", Self.badMAC("SEC-1", nonce: 11_002)).status == .unauthorized)
            #expect(try await client.postJSON("/aggregated/SEC-1", Uploads.body(device: "SEC-1", nonce: 11_001)).status == .unauthorized)
            // A made-up id: listed (bounded), never counted as a fleet device with problems.
            #expect(try await client.postJSON("/aggregated/MADE-UP", Self.badMAC("MADE-UP", nonce: 11_001)).status == .unauthorized)

            let events = try await client.execute(uri: "/api/v1/security/events?device_id=SEC-1", method: .get, headers: test.operatorHeaders)
            let items = try #require(events.json["items"] as? [[String: Any]])
            #expect(items.map { $0["reason"] as? String } == ["replay", "mac"], "newest first: \(items)")
            #expect(items.allSatisfy { $0["kind"] as? String == "security" && $0["address"] as? String != nil })
            let decodes = try await client.execute(uri: "/api/v1/security/events?kind=decode", method: .get, headers: test.operatorHeaders)
            #expect((decodes.json["items"] as? [[String: Any]])?.isEmpty == true)
            let fleet = try await client.execute(uri: "/api/v1/security/events?limit=2", method: .get, headers: test.operatorHeaders)
            #expect((fleet.json["items"] as? [[String: Any]])?.count == 2, "the fleet's latest, bounded by limit")

            let timeline = try await client.execute(uri: "/api/v1/security/timeline?hours=1", method: .get, headers: test.operatorHeaders)
            let minutes = try #require(timeline.json["minutes"] as? [[String: Any]])
            let counts = minutes.compactMap { $0["counts"] as? [String: Int] }.reduce(into: [String: Int]()) { total, minute in
                total.merge(minute, uniquingKeysWith: +)
            }
            #expect(counts == ["security/mac": 2, "security/replay": 1])
            let tooLong = try await client.execute(uri: "/api/v1/security/timeline?hours=25", method: .get, headers: test.operatorHeaders)
            #expect(tooLong.status == .badRequest, "\(String(buffer: tooLong.body))")

            let summary = try await client.execute(uri: "/api/v1/fleet/summary", method: .get, headers: test.operatorHeaders)
            #expect(summary.json["with_problems"] as? Int == 1, "SEC-1 only: \(summary.json)")
            let devices = try await client.execute(uri: "/api/v1/devices", method: .get, headers: test.operatorHeaders)
            let row = try #require((devices.json["items"] as? [[String: Any]])?.first { $0["device_id"] as? String == "SEC-1" })
            #expect(row["recent_problems"] as? Int == 2)
        }
    }

    @Test func theEventLogKeepsALimitedNumberOfDevicesAndEventsEach() {
        let log = DeviceEventLog(maxDevices: 3, perDevice: 2)
        for (index, id) in ["A", "B", "C", "D"].enumerated() {
            for step in 0..<3 {
                log.record(.init(atMs: Int64(index * 10 + step) * 1000, deviceID: id, kind: .security, reason: "mac"))
            }
        }
        #expect(log.recent(deviceID: "A").isEmpty, "the device whose latest event is oldest was dropped")
        #expect(log.recent(deviceID: "D").map(\.atMs) == [32_000, 31_000], "each keeps its latest two, newest first")
        #expect(log.problemCounts(sinceMs: 0) == ["B": 2, "C": 2, "D": 2])
        #expect(log.timeline(sinceMs: 0).flatMap { $0.counts.values }.reduce(0, +) == 12, "the per-minute counts keep every event")
        log.forget(["B"])
        #expect(log.latest(kind: nil, limit: 10).map(\.deviceID) == ["D", "D", "C", "C"])
    }

    @Test func aFloodOfDistinctIdsKeepsTheLogWithinItsLimitAndTheLatestDevices() {
        let log = DeviceEventLog(maxDevices: 64, perDevice: 2)
        for index in 0..<1_000 {
            log.record(.init(atMs: Int64(index) * 1000, deviceID: "FLOOD-\(index)", kind: .security, reason: "mac"))
        }
        let kept = log.problemCounts(sinceMs: 0)
        #expect(kept.count <= 64 && kept.count > 64 - 64 / 8, "\(kept.count) devices kept")
        let newestKept = (1_000 - kept.count..<1_000).map { "FLOOD-\($0)" }
        #expect(Set(kept.keys) == Set(newestKept), "the devices whose latest events are newest stay")
        #expect(log.timeline(sinceMs: 0).flatMap { $0.counts.values }.reduce(0, +) == 1_000)
    }

    @Test func aCommandWithoutAResultIsAProblemOfItsDevice() async throws {
        let test = try await TestServer(settings: ["command_result_timeout_seconds": 5])
        try await test.run { client in
            try await test.bind("LATE-1", client: client)
            let queued = try await client.operatorJSON(.post, "/api/v1/devices/LATE-1/commands", CommandHTTPTests.setPower, server: test)
            #expect(queued.status == .created)
            #expect(try await client.execute(uri: "/commands/LATE-1/poll", method: .get).json["count"] as? Int == 1)
            test.clock.set(test.clock.now + 6_000)
            await test.server.commands.sweep()
            let events = try await client.execute(
                uri: "/api/v1/security/events?device_id=LATE-1&kind=command",
                method: .get,
                headers: test.operatorHeaders
            )
            #expect((events.json["items"] as? [[String: Any]])?.map { $0["reason"] as? String } == ["timed_out"], "\(events.json)")
            let summary = try await client.execute(uri: "/api/v1/fleet/summary", method: .get, headers: test.operatorHeaders)
            #expect(summary.json["with_problems"] as? Int == 1)
        }
    }

    @Test func theFleetTableShowsEachDevicesLatestPowerAndUploadRate() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let start = test.clock.now
            for step in 0..<3 {
                test.clock.set(start + Int64(step) * 60_000)
                let upload = Uploads.body(device: "VIT-1", nonce: UInt32(11_001 + step))
                #expect(try await client.postJSON("/aggregated/VIT-1", upload).status == .ok)
            }
            let latest = try await client.execute(uri: "/api/v1/devices/VIT-1/telemetry/latest", method: .get, headers: test.operatorHeaders)
            let power = try #require(((latest.json["sample"] as? [String: Any])?["registers"] as? [String: Any])?["Pac"] as? Double)
            let devices = try await client.execute(uri: "/api/v1/devices?id_prefix=VIT", method: .get, headers: test.operatorHeaders)
            let row = try #require((devices.json["items"] as? [[String: Any]])?.first)
            #expect(row["latest_power_w"] as? Double == power, "the newest sample's Pac: \(row)")
            #expect(row["uploads_per_hour"] as? Double == 60, "three uploads a minute apart")
        }
    }

    @Test func theSystemPageReportsReleaseUptimeStorageAndIngestRate() async throws {
        let test = try await TestServer()
        try await test.run { client in
            #expect(try await client.postJSON("/aggregated/SYS-1", Uploads.body(device: "SYS-1", nonce: 11_001)).status == .ok)
            var system: [String: Any] = [:]
            for _ in 0..<50 {
                system = try await client.execute(uri: "/api/v1/system", method: .get, headers: test.operatorHeaders).json
                if system["database"] != nil { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(system["version"] as? String == BuildInfo.version)
            #expect(system["uploads_last_minute"] as? Int == 1 && system["uploads_accepted"] as? Int == 1)
            #expect((system["samples_stored"] as? Int ?? 0) > 0)
            #expect(system["event_streams_open"] as? Int == 0 && system["event_streams_max"] as? Int == 100)
            let database = try #require(system["database"] as? [String: Any], "measured at start")
            #expect((database["total_bytes"] as? Int ?? 0) > 0 && (database["tables"] as? [String: Int])?["devices"] != nil, "\(database)")
            test.clock.set(test.clock.now + 61_000)
            let later = try await client.execute(uri: "/api/v1/system", method: .get, headers: test.operatorHeaders).json
            #expect(later["uploads_last_minute"] as? Int == 0 && (later["uptime_seconds"] as? Int ?? 0) >= 61)
        }
    }

    @Test func theUploadRateFallsWhileADeviceIsSilent() {
        let vitals = DeviceVitals()
        for minute: Int64 in 0..<5 { vitals.accepted("S", atMs: minute * 60_000, packets: []) }
        #expect(vitals.vitals("S", nowMs: 5 * 60_000)?.uploadsPerHour == 60, "within two intervals: the uploads' own rate")
        #expect(vitals.vitals("S", nowMs: 40 * 60_000)?.uploadsPerHour == 6, "4 intervals over 40 minutes")
        #expect(vitals.vitals("S", nowMs: 0)?.powerW == nil, "no decoded Pac yet")
        #expect(vitals.vitals("OTHER", nowMs: 0) == nil)
        vitals.forget(["S"])
        #expect(vitals.vitals("S", nowMs: 0) == nil)
    }

    @Test func theUploadRateIsTakenOverTheLatestEightUploadsOnly() throws {
        let vitals = DeviceVitals()
        // Four uploads ten minutes apart, then eight a minute apart: the window holds the last eight.
        let times = (0..<4).map { Int64($0) * 600_000 } + (1...8).map { 1_800_000 + Int64($0) * 60_000 }
        for time in times { vitals.accepted("S", atMs: time, packets: []) }
        #expect(vitals.vitals("S", nowMs: times.last!)?.uploadsPerHour == 60, "7 one-minute intervals")
        // One more upload after a 100-day silence: the gap counts as 49.7 days (UInt32.max ms), not as a wrap.
        let late = times.last! + 100 * 86_400_000
        vitals.accepted("S", atMs: late, packets: [])
        let rate = try #require(vitals.vitals("S", nowMs: late)?.uploadsPerHour)
        let clamped = 7 * 3_600_000 / (Double(UInt32.max) + 6 * 60_000)
        #expect(abs(rate - clamped) < 1e-9, "six one-minute gaps and one clamped: \(rate)")
    }

    @Test func everyDevicesCommandsAreListedNewestFirstByCursor() async throws {
        let test = try await TestServer()
        try await test.run { client in
            for id in ["CMD-A", "CMD-B", "CMD-C"] {
                let queued = try await client.operatorJSON(
                    .post,
                    "/api/v1/devices/\(id)/commands",
                    #"{"action":"get_power_stats","create":true}"#,
                    server: test
                )
                #expect(queued.status == .created)
            }
            let first = try await client.execute(uri: "/api/v1/commands?limit=2", method: .get, headers: test.operatorHeaders)
            let items = try #require(first.json["items"] as? [[String: Any]])
            #expect(items.map { $0["device_id"] as? String } == ["CMD-C", "CMD-B"])
            let cursor = try #require(first.json["next_cursor"] as? String)
            let second = try await client.execute(uri: "/api/v1/commands?limit=2&cursor=\(cursor)", method: .get, headers: test.operatorHeaders)
            #expect((second.json["items"] as? [[String: Any]])?.map { $0["device_id"] as? String } == ["CMD-A"])
            let done = try await client.execute(uri: "/api/v1/commands?status=completed", method: .get, headers: test.operatorHeaders)
            #expect((done.json["items"] as? [[String: Any]])?.isEmpty == true)
        }
    }

    /// The pushes: a device page hears of its refused upload and its download; the firmware page (a fleet stream)
    /// of every download's progress; a failed update becomes a problem of the device. The streams last 45 s: the test
    /// reads what they sent once they end. A loaded CI machine once took more than 8 s to fetch five chunks, and
    /// another 1–3 s per chunk, so that the fifth came after 20 s streams had ended.
    @Test func streamsArePushedProblemsAndDownloadsAsTheyHappen() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let vector = vectors[1]
        let test = try await TestServer(firmwareKeys: keys)
        test.clock.followWallClock()
        try await OTAHTTPTests.install([vector], keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            let token = [("Authorization", "Bearer \(test.server.operatorToken)")]
            _ = try await OTAHTTPTests.deploy(vector.version, to: ["PUSH-1"], client: client, test: test)
            var device = OTAHTTPTests.Device(id: "PUSH-1", running: "1.0.0", keys: keys)
            try await test.bind(device.id, client: client)
            let (fleetSeen, fleetContinuation) = AsyncStream.makeStream(of: Void.self)
            let (deviceSeen, deviceContinuation) = AsyncStream.makeStream(of: Void.self)
            let fleet = Task {
                try await EventStreamTests.read(
                    port: port,
                    query: "max_seconds=45",
                    headers: token,
                    marker: #""chunks_served":5"#,
                    seen: fleetContinuation
                )
            }
            let page = Task {
                try await EventStreamTests.read(
                    port: port,
                    query: "device_id=PUSH-1&max_seconds=45",
                    headers: token,
                    marker: "event: summary",
                    seen: deviceContinuation
                )
            }
            for await _ in deviceSeen { break }
            let info = try #require(try await device.checkForUpdate(client))
            var receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            _ = try await device.fetch(client, &receiver, until: 5)
            // The firmware page sees the progress before the download fails (changes within one coalescing interval
            // merge into one read).
            for await _ in fleetSeen { break }
            #expect(try await client.postJSON("/aggregated/PUSH-1", Self.badMAC("PUSH-1", nonce: 12_001)).status == .unauthorized)
            try await device.progress(client, "verification_failed", 100, "hash mismatch")

            let fleetText = try await fleet.value.text
            let downloads = EventStreamTests.events(fleetText, "downloads")
            #expect(downloads.contains { $0.contains(#""device_id":"PUSH-1""#) && $0.contains(#""chunks_served":5"#) }, "\(fleetText)")
            #expect(EventStreamTests.events(fleetText, "sample").isEmpty, "a fleet stream gets no device's samples")
            let deviceText = try await page.value.text
            let problems = EventStreamTests.events(deviceText, "problems")
            #expect(problems.last?.contains(#""reason":"mac""#) == true, "\(deviceText)")
            #expect(problems.last?.contains(#""reason":"verification_failed""#) == true, "the failed update is a problem too")
            #expect(EventStreamTests.events(deviceText, "ota").contains { $0.contains(#""outcome":"failed""#) }, "\(deviceText)")
        }
    }

    @Test func assetsAreGzippedForBrowsersThatAcceptIt() async throws {
        let test = try await TestServer()
        try await test.run { client in
            let plain = try await client.execute(uri: "/assets/app.js", method: .get)
            #expect(plain.headers[.contentEncoding] == nil && plain.headers[.vary] == "Accept-Encoding")
            let gzipped = try await client.execute(uri: "/assets/app.js", method: .get, headers: [.acceptEncoding: "br, gzip;q=0.8"])
            #expect(gzipped.headers[.contentEncoding] == "gzip")
            #expect(gzipped.body.readableBytes * 2 < plain.body.readableBytes, "\(gzipped.body.readableBytes) of \(plain.body.readableBytes)")
            var compressed = gzipped.body
            #expect(try compressed.decompress(with: .gzip()) == plain.body, "the same bytes")
            #expect(gzipped.headers[.eTag] != plain.headers[.eTag], "each representation has its own tag")
            let refused = try await client.execute(uri: "/assets/app.js", method: .get, headers: [.acceptEncoding: "gzip;q=0"])
            #expect(refused.headers[.contentEncoding] == nil)
            let cached = try await client.execute(
                uri: "/assets/app.js",
                method: .get,
                headers: [.acceptEncoding: "gzip", .ifNoneMatch: try #require(gzipped.headers[.eTag])]
            )
            #expect(cached.status == .notModified)
        }
    }
}
