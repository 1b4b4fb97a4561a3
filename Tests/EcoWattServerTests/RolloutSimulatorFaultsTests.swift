import EcoWattProtocol
import EcoWattServer
import EcoWattSimulator
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import Testing

/// A rollout of an image that goes wrong on the devices in each way the fleet simulator can play (issue 21).
@Suite struct RolloutSimulatorFaultsTests {
    /// The reason the server must record for each way an update goes wrong.
    static let reasons: [UpdateFaults.Way: String] = [
        .verificationFailure: "verification_failed", .rollback: "rolled_back", .bootLoop: "rebooted_before_healthy",
        .silentAfterInstall: "silent_after_install",
    ]

    @Test func aFleetFailingVerificationRollbackBootLoopAndSilenceHaltsInItsFirstWave() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let test = try await TestServer(firmwareKeys: keys)
        test.clock.followWallClock()
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            var options = SimulatorHTTPTests.options(port: port, prefix: "SIMF_", devices: 16, keys: keys)
            options.intervals.ota = 5
            options.updateFaults.verificationFailure = 0.25
            options.updateFaults.rollback = 0.25
            options.updateFaults.bootLoop = 0.25
            options.updateFaults.silentAfterInstall = 0.25
            let ways = Dictionary(uniqueKeysWithValues: (0..<16).map { (options.deviceID($0), options.updateFaults.way(for: options.deviceID($0))) })
            #expect(Set(ways.values.compactMap { $0 }) == Set(UpdateFaults.Way.allCases), "the fleet plays every way")
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { $0.uploadsAccepted >= 16 }
            // Wave 1 is half of the fleet; nothing halts or advances before all 8 finished.
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","id_prefix":"SIMF_","settings":{"waves":[50,100],"min_finished":8,"halt_failure_percent":50}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            let firstWave = try await RolloutHTTPTests.devices(client, test, id, query: "wave=1").compactMap { $0["device_id"] as? String }
            #expect(firstWave.count == 8)
            // Every device of wave 1 fails on its own (silent ones stay installed until the health timeout).
            func settled(_ devices: [[String: Any]]) -> Bool {
                devices.allSatisfy { device in
                    let silent = ways[device["device_id"] as? String ?? ""] == .silentAfterInstall
                    return device["state"] as? String == (silent ? "installed" : "failed")
                }
            }
            let deadline = ContinuousClock.now + .seconds(60)
            var wave: [[String: Any]] = []
            while ContinuousClock.now < deadline {
                wave = try await RolloutHTTPTests.devices(client, test, id, query: "wave=1")
                if settled(wave) { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(settled(wave), "\(wave)")
            stop.request()
            let report = try await fleet.value
            // No decision before all 8 finished, unless the draw left wave 1 without a silent device (about 1 run in 26:
            // then all 8 failed on their own and the rollout halted already).
            let silentInWave = firstWave.count { ways[$0] == .silentAfterInstall }
            await test.server.services.rollouts.evaluate()  // not left to the 5 s loop: it may not have run yet
            let status = try await RolloutHTTPTests.rollout(client, test, id)["status"] as? String
            #expect(status == (silentInWave > 0 ? "active" : "halted"), "no decision before 8 finished")
            // The health timeout passes: the silent devices fail, and with them the rollout halts in wave 1.
            test.clock.set(Int64(Date().timeIntervalSince1970 * 1000) + 31 * 60_000)
            await test.server.services.rollouts.evaluate()
            let rollout = try await RolloutHTTPTests.rollout(client, test, id)
            #expect(rollout["status"] as? String == "halted" && rollout["current_wave"] as? Int == 1, "\(rollout)")
            #expect((rollout["reason"] as? String)?.contains("8 of 8 finished devices failed") == true, "\(rollout)")
            let devices = try await RolloutHTTPTests.devices(client, test, id)
            for device in devices where device["wave"] as? Int == 1 {
                let deviceID = device["device_id"] as? String ?? ""
                let expected = ways[deviceID].flatMap { $0 }.flatMap { Self.reasons[$0] }
                #expect(device["state"] as? String == "failed" && device["reason"] as? String == expected, "\(device)")
            }
            let later = devices.filter { device in device["wave"] as? Int == 2 }
            #expect(later.count == 8 && later.allSatisfy { $0["state"] as? String == "pending" && $0["started_at"] == nil }, "\(later)")
            let updated = Set(report.firmwareUpdates.map(\.deviceID))
            #expect(updated == Set(firstWave), "only wave 1 was offered the image: \(updated.sorted())")
        }
    }

    /// The fleet simulator through pacing (one download at a time), a pause and a resume, to 100 % healthy, and then a
    /// rollback that returns every device to the version it ran before.
    @Test func aSimulatedFleetIsPacedPausedResumedAndRolledBack() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        test.clock.followWallClock()
        try await OTAHTTPTests.install(vectors, keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            var options = SimulatorHTTPTests.options(port: port, prefix: "PRB_", devices: 4, keys: keys)
            options.intervals.ota = 5
            options.firmwareVersion = vectors[0].version
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { $0.uploadsAccepted >= 4 }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(vectors[1].version)","id_prefix":"PRB_","settings":{"waves":[100],"min_finished":1,"health_uploads":2,"max_concurrent_downloads":1}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            func started() async throws -> Int {
                try await RolloutHTTPTests.devices(client, test, id).count { $0["started_at"] != nil }
            }
            // Paused after the first device started: no other starts while paused (one offered just before the pause
            // may still begin, within the first second).
            let deadline = ContinuousClock.now + .seconds(30)
            while try await started() == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/pause", nil, server: test).status == .ok)
            try await Task.sleep(for: .seconds(1))
            let whilePaused = try await started()
            try await Task.sleep(for: .seconds(3))  // six OTA checks per device
            #expect(try await started() == whilePaused && whilePaused < 4, "nothing starts while paused")
            #expect(try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/resume", nil, server: test).status == .ok)
            let done = try await RolloutHTTPTests.waitWhile("active", client, test, id)
            #expect(done["status"] as? String == "completed" && (done["counts"] as? [String: Int]) == ["healthy": 4], "\(done)")
            // Pacing: at most one download at a time, so each started after the one before had installed.
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            func time(_ device: [String: Any], _ key: String) -> Date { formatter.date(from: device[key] as? String ?? "") ?? .distantPast }
            let timeline = try await RolloutHTTPTests.devices(client, test, id).sorted { time($0, "started_at") < time($1, "started_at") }
            for (before, after) in zip(timeline, timeline.dropFirst()) {
                #expect(time(after, "started_at") >= time(before, "installed_at"), "two downloads at once: \(before) \(after)")
            }

            // Rollback: a one-wave rollout of the version they ran before, and the devices run it again.
            let rollback = try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/rollback", nil, server: test)
            let back = try #require(rollback.json["id"] as? Int, "\(String(buffer: rollback.body))")
            #expect(rollback.json["version"] as? String == vectors[0].version)
            let returned = try await RolloutHTTPTests.waitWhile("active", client, test, back)
            #expect(returned["status"] as? String == "completed", "\(returned)")
            stop.request()
            let report = try await fleet.value
            #expect(report.firmwareUpdates.count { $0.toVersion == vectors[0].version && $0.failure == nil } == 4)
            for index in 0..<4 {
                let device = try await client.execute(uri: "/api/v1/devices/\(options.deviceID(index))", method: .get, headers: test.operatorHeaders)
                #expect(device.json["firmware_version"] as? String == vectors[0].version, "\(device.json)")
            }
        }
    }

    @Test func theSimulateCommandRefusesUpdateFaultSharesBeyondTheWholeFleet() async throws {
        let (status, _, stderr) = try await ServerProcess.runCLI([
            "simulate", "--url", "http://127.0.0.1:9", "--ota-rollback", "0.8", "--ota-boot-loop", "0.5",
        ])
        #expect(status != 0 && stderr.contains("add up to at most 1"), "\(stderr)")
    }
}
