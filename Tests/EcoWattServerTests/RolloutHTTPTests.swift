import EcoWattProtocol
import EcoWattServer
import EcoWattSimulator
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import Synchronization
import Testing

/// Staged rollouts against a live server (issue 21): devices emulated request by request (the firmware's exact
/// requests) for the rules, and the fleet simulator for a whole rollout.
@Suite struct RolloutHTTPTests {
    @Test func wavesOpenOnHealthyEvidenceAndFailuresHaltTheRollout() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        let ids = ["RO-1", "RO-2", "RO-3", "RO-4"]
        // The rollout, and the wave-2 device that never started (waves are drawn per rollout: which id it is varies).
        let kept = Mutex((id: 0, untouched: ""))
        try await test.run { client in
            for id in ids { try await test.bind(id, client: client) }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"""
                {"version":"\#(image.version)","device_ids":["RO-1","RO-2","RO-3","RO-4"],
                 "settings":{"waves":[25,100],"min_finished":1,"health_uploads":2,"health_minutes":60,"health_timeout_minutes":30,
                             "halt_failure_percent":60}}
                """#,
                server: test
            )
            #expect(created.status == .created, "\(String(buffer: created.body))")
            let id = try #require(created.json["id"] as? Int)
            kept.withLock { $0.id = id }
            #expect(created.json["wave_count"] as? Int == 2 && created.json["current_wave"] as? Int == 1)
            let first = try #require(try await Self.devices(client, test, id, query: "wave=1").first?["device_id"] as? String)
            let rest = ids.filter { $0 != first }
            kept.withLock { $0.untouched = rest[2] }
            #expect(try await Self.devices(client, test, id, query: "wave=2").count == 3)

            // A later wave is told why it waits; the open /ota/check moves nothing.
            #expect(try await Self.withheld(client, rest[0]).contains("wave 2 of 2 is not open yet"))
            var canary = OTAHTTPTests.Device(id: first, running: "1.0.0", keys: keys)
            try await Self.install(&canary, client, keys: keys)
            #expect(Self.state(try await Self.devices(client, test, id), first) == "installed", "installed is not yet a success")
            await test.server.services.rollouts.evaluate()
            #expect(try await Self.rollout(client, test, id)["current_wave"] as? Int == 1, "no evidence of health yet: the wave waits")
            for _ in 0..<2 { try await test.bind(first, client: client) }  // signed, decoded uploads on the new version
            #expect(Self.state(try await Self.devices(client, test, id), first) == "healthy")
            await test.server.services.rollouts.evaluate()
            #expect(try await Self.rollout(client, test, id)["current_wave"] as? Int == 2, "the canary is healthy: wave 2 opens")

            // Pause: nothing new is offered; resume: offered again.
            let paused = try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/pause", nil, server: test)
            #expect(paused.json["status"] as? String == "paused")
            #expect(try await Self.withheld(client, rest[0]).contains("paused"))
            #expect(try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/resume", nil, server: test).json["status"] as? String == "active")

            // A device that reboots before it proved healthy failed (a boot loop); one silent after installing fails
            // at the health timeout.
            var looping = OTAHTTPTests.Device(id: rest[0], running: "1.0.0", keys: keys)
            try await Self.install(&looping, client, keys: keys)
            _ = try await looping.boot(client)
            var silent = OTAHTTPTests.Device(id: rest[1], running: "1.0.0", keys: keys)
            try await Self.install(&silent, client, keys: keys)
            let states = try await Self.devices(client, test, id)
            #expect(Self.state(states, rest[0]) == "failed" && Self.state(states, rest[1]) == "installed")
            test.clock.set(test.clock.now + 31 * 60_000)
            await test.server.services.rollouts.evaluate()
            let after = try await Self.devices(client, test, id)
            let reasons = Dictionary(after.map { ($0["device_id"] as! String, $0["reason"] as? String ?? "") }) { a, _ in a }
            #expect(reasons[rest[0]] == "rebooted_before_healthy" && reasons[rest[1]] == "silent_after_install", "\(reasons)")
            // 2 of 3 finished failed (≥ 60 %): halted with the reason, nothing more is offered. (1 of 2 after the reboot
            // stays under 60 %, so the server's own evaluation every 5 s cannot halt it earlier on a slow machine.)
            let halted = try await Self.rollout(client, test, id)
            #expect(halted["status"] as? String == "halted", "\(halted)")
            #expect((halted["reason"] as? String)?.contains("2 of 3 finished devices failed") == true)
            #expect(try await Self.withheld(client, rest[2]).contains("halted"))
            let audit = try await client.execute(uri: "/api/v1/audit?limit=50", method: .get, headers: test.operatorHeaders)
            let actions = (audit.json["items"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.contains("rolloutAdvanced") && actions.contains("rolloutHalted") && actions.contains("createRollout"))
            // A device is in one open rollout at a time.
            let again = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","device_ids":["\#(rest[2])"]}"#,
                server: test
            )
            #expect(
                again.status == .conflict && String(buffer: again.body).contains("devices_in_rollout"),
                "\(again.status) \(String(buffer: again.body))"
            )
        }
        // After a restart the rollout, its waves and its devices' states are as they were.
        let restarted = try await TestServer(directory: test.directory, firmwareKeys: keys)
        try await restarted.run { client in
            let (id, untouched) = kept.withLock { $0 }
            let rollout = try await Self.rollout(client, restarted, id)
            #expect(rollout["status"] as? String == "halted" && rollout["current_wave"] as? Int == 2)
            let waves = try #require(rollout["waves"] as? [[String: Any]])
            #expect(waves.map { $0["targeted"] as? Int } == [1, 3])
            #expect(try await Self.withheld(client, untouched).contains("halted"))
            // It continues where it stopped: resumed, the last device installs, proves healthy, and the rules judge it.
            let resumed = try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/resume", nil, server: restarted)
            #expect(resumed.json["status"] as? String == "active")
            // The failures it was resumed with (2 of 3 finished, over the 60 % halt share) do not halt it again.
            await restarted.server.services.rollouts.evaluate()
            #expect(try await Self.rollout(client, restarted, id)["status"] as? String == "active", "still active after a decision")
            var last = OTAHTTPTests.Device(id: untouched, running: "1.0.0", keys: keys)
            try await Self.install(&last, client, keys: keys)
            for _ in 0..<2 { try await restarted.bind(untouched, client: client) }
            #expect(Self.state(try await Self.devices(client, restarted, id), untouched) == "healthy")
            await restarted.server.services.rollouts.evaluate()
            let judged = try await Self.rollout(client, restarted, id)
            // 2 of 4 failed (50 %) is under the halt share; 1 of 3 healthy in wave 2 is under the success ratio: it waits.
            #expect(judged["status"] as? String == "active", "\(judged)")
            #expect((judged["counts"] as? [String: Int]) == ["healthy": 2, "failed": 2])
        }
    }

    @Test func pacingHoldsNewDownloadsAndTimeoutsCountAsFailures() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            for id in ["PACE-1", "PACE-2", "PACE-3"] { try await test.bind(id, client: client) }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","id_prefix":"PACE-","settings":{"waves":[100],"max_concurrent_downloads":1,"download_timeout_minutes":10}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            var first = OTAHTTPTests.Device(id: "PACE-1", running: "1.0.0", keys: keys)
            let info = try #require(try await first.checkForUpdate(client))
            let receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            #expect(try await first.initiate(client, version: receiver.version).status == .ok)
            #expect(try await Self.withheld(client, "PACE-2").contains("1 downloads in progress (at most 1)"))
            // The download never finishes: after the download timeout it failed, and the next device may start.
            test.clock.set(test.clock.now + 11 * 60_000)
            await test.server.services.rollouts.evaluate()
            #expect(Self.state(try await Self.devices(client, test, id), "PACE-1") == "failed")
            var second = OTAHTTPTests.Device(id: "PACE-2", running: "1.0.0", keys: keys)
            #expect(try await second.checkForUpdate(client) != nil)
            // Retry puts the failed device back to pending.
            let retried = try await client.operatorJSON(.post, "/api/v1/rollouts/\(id)/retry", nil, server: test)
            #expect((retried.json["counts"] as? [String: Int])?["failed"] == nil, "\(retried.json)")
            #expect(Self.state(try await Self.devices(client, test, id), "PACE-1") == "pending")
            let bad = try await client.operatorJSON(.post, "/api/v1/rollouts", #"{"version":"0.0.404","all":true}"#, server: test)
            #expect(bad.status == .notFound, "\(String(buffer: bad.body))")
            let twoTargets = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","all":true,"id_prefix":"X"}"#,
                server: test
            )
            #expect(twoTargets.status == .unprocessableContent)
        }
    }

    @Test func aRollbackReturnsTheDevicesThatInstalledTheImageToTheirPreviousVersion() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install(vectors, keys: keys, into: test)
        // An image signed with other keys: the devices would refuse it.
        let foreign = try FirmwarePreparer.prepare(image: vectors[0].plaintext, version: "0.0.7", keys: TestServer.sharedKeys)
        try FirmwareDirectory(path: test.server.configuration.ota.firmwareDirectory).save(foreign)
        let (old, new) = (vectors[0].version, vectors[1].version)
        try await test.run { client in
            for id in ["RB-1", "RB-2"] { try await test.bind(id, client: client) }
            func create(_ version: String) async throws -> Int {
                let response = try await client.operatorJSON(
                    .post,
                    "/api/v1/rollouts",
                    #"{"version":"\#(version)","device_ids":["RB-1","RB-2"],"settings":{"waves":[100],"min_finished":1,"health_uploads":1}}"#,
                    server: test
                )
                return try #require(response.json["id"] as? Int, "\(String(buffer: response.body))")
            }
            let first = try await create(old)
            var one = OTAHTTPTests.Device(id: "RB-1", running: "1.0.0", keys: keys)
            var two = OTAHTTPTests.Device(id: "RB-2", running: "1.0.0", keys: keys)
            try await Self.install(&one, client, keys: keys)
            try await Self.install(&two, client, keys: keys)
            for id in ["RB-1", "RB-2"] { try await test.bind(id, client: client) }
            await test.server.services.rollouts.evaluate()
            #expect(try await Self.rollout(client, test, first)["status"] as? String == "completed")

            let second = try await create(new)
            try await Self.install(&one, client, keys: keys)  // RB-1 installs the new image; RB-2 has not started
            #expect(one.running == new)
            let refused = try await client.operatorJSON(.post, "/api/v1/rollouts/\(second)/rollback", #"{"version":"0.0.7"}"#, server: test)
            #expect(refused.status == .conflict && String(buffer: refused.body).contains("does not verify"), "\(String(buffer: refused.body))")
            let rollback = try await client.operatorJSON(.post, "/api/v1/rollouts/\(second)/rollback", nil, server: test)
            #expect(rollback.status == .created, "\(String(buffer: rollback.body))")
            let third = try #require(rollback.json["id"] as? Int)
            #expect(rollback.json["version"] as? String == old)
            #expect(try await Self.devices(client, test, third).map { $0["device_id"] as? String } == ["RB-1"], "only the device that installed it")
            let cancelled = try await Self.rollout(client, test, second)
            #expect(cancelled["status"] as? String == "cancelled" && (cancelled["reason"] as? String)?.contains("rolled back") == true)
            try await Self.install(&one, client, keys: keys)
            #expect(one.running == old, "RB-1 runs the previous image again")
        }
    }

    @Test func theCLICreatesShowsAndSteersARollout() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install([vectors[0]], keys: keys, into: test)
        try await test.run { client in
            for id in ["CLI-R1", "CLI-R2", "CLI-R3"] { try await test.bind(id, client: client) }
            let token = test.directory.appendingPathComponent("keys/operator_token").path
            let common = ["--url", "http://127.0.0.1:\(try #require(client.port))", "--token-file", token]
            let (created, createdOut, createdError) = try await ServerProcess.runCLI(
                ["rollout", "create", vectors[0].version, "--id-prefix", "CLI-R", "--waves", "33,100", "--min-finished", "1"] + common
            )
            #expect(created == 0, "\(createdError)")
            #expect(
                createdOut.contains("rollout 1: \(vectors[0].version) active, wave 1 of 2") && createdOut.contains("wave 2 (not open): 2 devices")
            )
            let (_, listed, _) = try await ServerProcess.runCLI(["rollout", "list"] + common)
            #expect(listed.hasPrefix("ID") && listed.contains("1/2"))
            let (_, shown, _) = try await ServerProcess.runCLI(["rollout", "show", "1", "--devices"] + common)
            #expect(shown.contains("CLI-R1") && shown.contains("pending"))
            let (_, paused, _) = try await ServerProcess.runCLI(["rollout", "pause", "1"] + common)
            #expect(paused.contains("paused"))
            let (_, advanced, _) = try await ServerProcess.runCLI(["rollout", "advance", "1"] + common)
            #expect(advanced.contains("wave 2 of 2"))
            let (_, cancelled, _) = try await ServerProcess.runCLI(["rollout", "cancel", "1"] + common)
            #expect(cancelled.contains("cancelled"))
            let (again, _, againError) = try await ServerProcess.runCLI(["rollout", "resume", "1"] + common)
            #expect(again == 1 && againError.contains("409") && !againError.contains("USAGE"))
            let (badWaves, _, badError) = try await ServerProcess.runCLI(["rollout", "create", "x", "--all", "--waves", "1,a"] + common)
            #expect(badWaves != 0 && badError.contains("--waves"))
        }
    }

    @Test(.enabled(if: MosquittoBroker.isInstalled, "needs the mosquitto broker")) func aHaltIsPublishedOnTheEventsTopic() async throws {
        let broker = try MosquittoBroker()
        let subscriber = try MQTTSubscriber(port: broker.port, topic: "ecowatt/events/#")
        try await subscriber.waitUntilSubscribed()
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys, mqttPort: broker.port)
        try await OTAHTTPTests.install([vectors[0]], keys: keys, into: test)
        try await test.run { client in
            for id in ["EV-1", "EV-2"] { try await test.bind(id, client: client) }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(vectors[0].version)","device_ids":["EV-1","EV-2"],"settings":{"waves":[100],"halt_failure_count":1}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int)
            var device = OTAHTTPTests.Device(id: "EV-1", running: "1.0.0", keys: keys)
            let info = try #require(try await device.checkForUpdate(client))
            let receiver = try DeviceFirmwareReceiver(updateInfo: info, aesKey: keys.aesKey)
            #expect(try await device.initiate(client, version: receiver.version).status == .ok)
            try await device.progress(client, "verification_failed", 100, "Firmware signature verification failed")
            await test.server.services.rollouts.evaluate()
            let messages = try await subscriber.wait(for: 1)
            #expect(messages.first?.topic == "ecowatt/events/rollouts")
            let payload = try JSONParser.parse(try #require(messages.first).payload)
            #expect(payload["event"]?.stringValue == "rolloutHalted" && payload["rollout_id"]?.intValue == Int64(id))
            #expect(payload["reason"]?.stringValue == "1 devices failed (limit 1)" && payload["status"]?.stringValue == "halted")
        }
        subscriber.stop()
    }

    /// The fleet simulator with a bad image (every device fails its verification: a wrong hash in the offer): the
    /// rollout halts in its first wave, with the reason, and no device of a later wave ever starts a download.
    @Test func aBadImageHaltsInItsFirstWave() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let test = try await TestServer(firmwareKeys: keys, faultInjection: true)
        test.clock.followWallClock()
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            var options = SimulatorHTTPTests.options(port: port, prefix: "BAD_", devices: 10, keys: keys)
            options.intervals.ota = 5
            for index in 0..<10 {
                let fault = #"{"kind":"bad_hash","device_id":"\#(options.deviceID(index))"}"#
                #expect(try await client.operatorJSON(.post, "/api/v1/faults/ota", fault, server: test).status == .created)
            }
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { $0.uploadsAccepted >= 10 }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","id_prefix":"BAD_","settings":{"waves":[20,50,100],"min_finished":2}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            let rollout = try await Self.waitWhile("active", client, test, id, seconds: 90)
            // A few more device check intervals: nothing more may start.
            try await Task.sleep(for: .seconds(2))
            stop.request()
            _ = try await fleet.value
            #expect(rollout["status"] as? String == "halted", "\(rollout)")
            #expect((rollout["reason"] as? String)?.contains("2 of 2 finished devices failed") == true, "\(rollout)")
            #expect(rollout["current_wave"] as? Int == 1)
            let devices = try await Self.devices(client, test, id)
            let later = devices.filter { ($0["wave"] as? Int ?? 0) > 1 }
            #expect(later.count == 8 && later.allSatisfy { $0["state"] as? String == "pending" && $0["started_at"] == nil })
            let first = devices.filter { $0["wave"] as? Int == 1 }
            #expect(first.count == 2 && first.allSatisfy { $0["state"] as? String == "failed" && $0["reason"] as? String == "verification_failed" })
        }
    }

    /// The fleet simulator: a good image through every wave to 100 % healthy, each wave opened only after the
    /// previous one's devices were healthy.
    @Test func aSimulatedFleetIsRolledOutWaveByWave() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[1]
        let test = try await TestServer(firmwareKeys: keys)
        test.clock.followWallClock()
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            var options = SimulatorHTTPTests.options(port: port, prefix: "WAVE_", devices: 6, keys: keys)
            options.intervals.ota = 10
            options.intervals.upload = 3
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { $0.uploadsAccepted >= 6 }
            let created = try await client.operatorJSON(
                .post,
                "/api/v1/rollouts",
                #"{"version":"\#(image.version)","id_prefix":"WAVE_","settings":{"waves":[20,50,100],"min_finished":1,"health_uploads":2}}"#,
                server: test
            )
            let id = try #require(created.json["id"] as? Int, "\(String(buffer: created.body))")
            let rollout = try await Self.waitWhile("active", client, test, id, seconds: 120)
            stop.request()
            let report = try await fleet.value
            #expect(rollout["status"] as? String == "completed", "\(rollout)")
            #expect((rollout["counts"] as? [String: Int]) == ["healthy": 6])
            #expect(report.firmwareUpdates.count == 6 && report.firmwareUpdates.allSatisfy { $0.failure == nil })
            // Wave order: every device of a wave started after every device of the waves before it was healthy.
            let devices = try await Self.devices(client, test, id)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            func time(_ device: [String: Any], _ key: String) -> Date { formatter.date(from: device[key] as? String ?? "") ?? .distantPast }
            for wave in 2...3 {
                let earlier = devices.filter { ($0["wave"] as? Int ?? 0) < wave }
                let current = devices.filter { $0["wave"] as? Int == wave }
                let lastHealthy = earlier.map { time($0, "finished_at") }.max() ?? .distantPast
                let firstStart = current.map { time($0, "started_at") }.min() ?? .distantFuture
                #expect(lastHealthy <= firstStart, "wave \(wave) started before the earlier waves were healthy")
            }
        }
    }
}
