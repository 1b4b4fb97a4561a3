import EcoWattProtocol
import EcoWattServer
import EcoWattSimulator
import EcoWattTestSupport
import FirmwareImage
import Foundation
import HummingbirdTesting
import Testing

/// `ecowatt simulate` against a live server: two fleets (multi-sample and single-sample batches) upload, execute the
/// commands and configuration an operator queues during the run, and download, verify and install a deployed image.
@Suite struct SimulatorHTTPTests {
    static func options(port: Int, prefix: String, devices: Int, keys: FirmwareKeys) -> SimulationOptions {
        var options = SimulationOptions(baseURL: "http://127.0.0.1:\(port)")
        options.idPrefix = prefix
        options.devices = devices
        // The tests end runs with `SimulationStop` once the devices have done their part. The cap is only a backstop:
        // a paced rollout and its rollback took over 60 s in a loaded full test run, and a fleet that ended by then
        // stopped uploading, so an installed device never proved healthy (with 60 s, 3 of 6 loaded full runs failed).
        options.duration = 300
        options.speed = 10
        options.rampUp = 0.2
        options.firmwareKeys = keys
        options.intervals.poll = 1
        options.intervals.upload = 3
        options.intervals.command = 2
        options.intervals.config = 2
        options.intervals.energy = 10
        options.intervals.ota = 10
        return options
    }

    /// Issue 14: boot reports and registrations forged while single-sample devices stream 0x71 packets, from a
    /// stranger's address (held, never applied) and from the devices' own address (a reboot hypothesis that their
    /// signed uploads disprove), leave every packet decodable.
    @Test func forgedBootSignalsDuringARunLeaveEveryTemporalPacketDecodable() async throws {
        let (keys, _) = try OTAHTTPTests.vectors()
        let test = try await TestServer(firmwareKeys: keys)
        try await test.run { client in
            let port = try #require(client.port)
            var single = Self.options(port: port, prefix: "FORGE_", devices: 2, keys: keys)
            single.intervals.upload = 1
            single.intervals.ota = 100_000  // no firmware checks in this run
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: single).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { $0.packetsByMarker["0x71", default: 0] > 0 }
            let report = #"{"sampling_interval":1,"upload_interval":1,"registers":["Vac1","Iac1","Ipv1","Ipv2","Temp","Pac"]}"#
            for round in 0..<12 {
                for index in 0..<2 {
                    let id = single.deviceID(index)
                    let address = round % 2 == 0 ? "127.0.0.2" : "127.0.0.1"
                    _ = try await LoopbackHTTP.request(port: port, from: address, method: "POST", path: "/config/\(id)/current", body: report)
                    _ = try await LoopbackHTTP.request(port: port, from: address, method: "POST", path: "/devices", body: #"{"device_id":"\#(id)"}"#)
                }
                try await Task.sleep(for: .milliseconds(150))
            }
            let delta = latest.get()?.packetsByMarker["0x71", default: 0] ?? 0
            try await latest.wait { $0.packetsByMarker["0x71", default: 0] >= delta + 10 }
            stop.request()
            let result = try await fleet.value
            #expect(result.uploadsRejected == 0)
            let stats = try await client.execute(uri: "/api/v1/stats/compression", method: .get, headers: test.operatorHeaders)
            let compression = stats.json
            #expect(compression["total_packets"] as? Int == result.packetsUploaded)
            #expect(compression["decoded_packets"] as? Int == result.packetsUploaded, "\(compression["undecodable_by_reason"] ?? "")")
            #expect((compression["packets_by_marker"] as? [String: Int])?["0x71", default: 0] ?? 0 >= 10)
        }
    }

    @Test func simulatedFleetUploadsRunsCommandsAndInstallsFirmware() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[1]  // 100 KiB, 51 chunks
        let test = try await TestServer(firmwareKeys: keys)
        try await OTAHTTPTests.install([image], keys: keys, into: test)
        try await test.run { client in
            let port = try #require(client.port)
            var batches = Self.options(port: port, prefix: "SIM_A_", devices: 3, keys: keys)
            batches.modbusFaultRate = 0.1
            var single = Self.options(port: port, prefix: "SIM_B_", devices: 2, keys: keys)
            single.intervals.upload = 1  // one sample per batch: the temporal (0x71) path
            // The run ends when the devices have done everything below (`stop`), not after a fixed time: a busy test
            // process on 2 cores runs them slower.
            let latestA = LatestReport()
            let latestB = LatestReport()
            let stop = SimulationStop()
            let fleetA = Task { try await FleetSimulator(options: batches).run(stop: stop) { latestA.set($0.report) } }
            let fleetB = Task { try await FleetSimulator(options: single).run(stop: stop) { latestB.set($0.report) } }

            // The operator acts while the fleets run.
            try await latestA.wait { $0.uploadsAccepted >= 3 }
            var queued: [String: String] = [:]  // command id → expected status
            for index in 0..<3 {
                let device = batches.deviceID(index)
                for (body, expected) in [
                    (#"{"action":"set_power","value":5000,"create":true}"#, "completed"),
                    (#"{"action":"write_register","target_register":"8","value":80,"create":true}"#, "completed"),
                    (#"{"action":"get_power_stats","create":true}"#, "completed"),
                ] {
                    let response = try await client.operatorJSON(.post, "/api/v1/devices/\(device)/commands", body, server: test)
                    #expect(response.status == .created)
                    queued[try #require(response.json["command_id"] as? String)] = expected
                }
            }
            let config = try await client.operatorJSON(
                .put,
                "/api/v1/devices/SIM_A_001/config/pending",
                #"{"config_update":{"registers":["Vac1","Pac"]},"create":true}"#,
                server: test
            )
            #expect(config.status == .ok)
            _ = try await OTAHTTPTests.deploy(image.version, to: nil, client: client, test: test)

            try await latestB.wait { $0.firmwareUpdates.count == 2 && $0.packetsByMarker["0x71", default: 0] > 0 }
            try await latestA.wait {
                $0.firmwareUpdates.count == 3 && $0.commands.count == 9 && $0.configsApplied == 1 && $0.energyReports > 0
                    && $0.faultsRecovered + $0.faultsFailed > 0
            }
            // A few more uploads, so that the new register set has been used.
            let uploaded = latestA.get()?.uploadsAccepted ?? 0
            try await latestA.wait { $0.uploadsAccepted >= uploaded + 6 }
            stop.request()
            let reportA = try await fleetA.value
            let reportB = try await fleetB.value

            for (report, devices) in [(reportA, 3), (reportB, 2)] {
                #expect(report.isClean, "\(report.rendered())")
                #expect(report.rendered().contains("verified and installed"), "checks were due: the download line")
                #expect(report.uploadsAccepted > 0)
                #expect(report.uploadsRejected == 0)
                let uploads = try #require(report.requests["POST /aggregated/{id}"])
                #expect(uploads.statuses == [200: report.uploadsAccepted])
                #expect(report.packetsUploaded == report.packetsCompressed, "nothing left in the rings")
                // Every device downloaded, verified and installed the image, then rebooted into it.
                #expect(report.firmwareUpdates.count == devices)
                #expect(report.firmwareUpdates.allSatisfy { $0.failure == nil && $0.chunks == 51 })
                #expect(report.boots == 2 * report.firmwareUpdates.count)
            }
            #expect(reportB.packetsByMarker["0x71", default: 0] > 0, "single-sample batches use temporal deltas")

            // Every command queued during the run was executed and reported, with the right outcome.
            #expect(Set(reportA.commands.map(\.commandID)) == Set(queued.keys))
            #expect(reportA.commands.allSatisfy { $0.reported })
            for (commandID, expected) in queued {
                let status = try await client.execute(
                    uri: "/api/v1/commands/\(commandID)",
                    method: .get,
                    headers: test.operatorHeaders
                )
                #expect(status.json["status"] as? String == expected)
            }

            // The configuration was applied: the device now uploads the two registers it was given.
            #expect(reportA.configsApplied == 1)
            let latest = try await client.execute(uri: "/api/v1/devices/SIM_A_001/telemetry/latest", method: .get, headers: test.operatorHeaders)
            #expect(((latest.json["sample"] as? [String: Any])?["registers"] as? [String: Any]).map { Set($0.keys) } == ["Vac1", "Pac"])

            // The registry shows the new version, and the server decoded every packet the devices sent.
            for device in ["SIM_A_001", "SIM_A_003", "SIM_B_002"] {
                let row = try await client.execute(uri: "/api/v1/devices/\(device)", method: .get, headers: test.operatorHeaders)
                #expect(row.json["firmware_version"] as? String == image.version)
            }
            // Modbus fault events and energy reports reached the server, one for one.
            var faultEvents = 0
            var energyReports = 0
            for index in 0..<3 {
                let device = batches.deviceID(index)
                let faults = try await client.execute(
                    uri: "/api/v1/devices/\(device)/reports/faults",
                    method: .get,
                    headers: test.operatorHeaders
                )
                faultEvents += faults.json["total"] as? Int ?? 0
                let energy = try await client.execute(
                    uri: "/api/v1/devices/\(device)/reports/energy?limit=1000",
                    method: .get,
                    headers: test.operatorHeaders
                )
                energyReports += (energy.json["items"] as? [Any])?.count ?? 0
            }
            #expect(reportA.faultsRecovered + reportA.faultsFailed > 0)
            #expect(faultEvents == reportA.faultsRecovered + reportA.faultsFailed)
            #expect(reportA.energyReports > 0)
            #expect(energyReports == reportA.energyReports)

            let stats = try await client.execute(uri: "/api/v1/stats", method: .get, headers: test.operatorHeaders)
            let compression = stats.json["compression"] as? [String: Any]
            let sent = reportA.packetsUploaded + reportB.packetsUploaded
            #expect(compression?["total_packets"] as? Int == sent)
            #expect(compression?["decoded_packets"] as? Int == sent, "\(compression?["undecodable_by_reason"] ?? "")")
        }
    }
}

extension SimulatorHTTPTests {
    /// Uploads fail for a while (injected 503s): the devices keep compressing into their rings, retry with fresh nonces,
    /// and after the outage drain the backlog in requests of at most 8 packets, oldest first. Nothing is lost.
    @Test func backlogAfterAnOutageIsDeliveredInBatchesOfEight() async throws {
        let test = try await TestServer(faultInjection: true)
        try await test.run { client in
            let port = try #require(client.port)
            var options = SimulationOptions(baseURL: "http://127.0.0.1:\(port)")
            options.idPrefix = "SIM_OUT_"
            options.devices = 2
            options.duration = 300  // ended by `stop` once the backlog is delivered (long: beside a busy run 60 s ran out)
            options.speed = 10
            options.rampUp = 0.1
            options.intervals.poll = 1
            options.intervals.upload = 5  // 2 packets per device per real second
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            // Driven by what the devices did, not by wall time: a busy test process on 2 cores runs them slower.
            try await latest.wait { $0.uploadsAccepted >= 2 }
            let inject = try await client.operatorJSON(
                .post,
                "/api/v1/faults/network",
                #"{"kind":"disconnect","target_endpoint":"/aggregated","probability":1}"#,
                server: test
            )
            #expect(inject.status == .ok || inject.status == .created)
            // At least 9 packets waiting per device (the ring holds 20).
            try await latest.wait { $0.packetsCompressed - $0.packetsUploaded >= 18 }
            #expect(try await client.operatorJSON(.delete, "/api/v1/faults", nil, server: test).status == .ok)
            try await latest.wait {
                $0.packetsUploaded == $0.packetsCompressed && $0.packetsPerUpload.keys.contains(8)
            }
            stop.request()
            let report = try await fleet.value

            let uploads = try #require(report.requests["POST /aggregated/{id}"])
            #expect(Set(uploads.statuses.keys) == [200, 503], "\(report.rendered())")
            #expect(report.uploadsRejected == uploads.statuses[503])
            #expect(report.packetsDropped == 0)
            #expect(report.packetsUploaded == report.packetsCompressed, "the whole backlog was delivered")
            #expect(report.packetsPerUpload.keys.max() == 8, "\(report.packetsPerUpload)")
            #expect(report.packetsPerUpload.keys.allSatisfy { (1...8).contains($0) })
            let stats = try await client.execute(uri: "/api/v1/stats", method: .get, headers: test.operatorHeaders)
            let compression = stats.json["compression"] as? [String: Any]
            #expect(compression?["total_packets"] as? Int == report.packetsUploaded)
        }
    }
}

extension SimulatorHTTPTests {
    /// The real binary: `ecowatt simulate` prints its report, writes it as JSON, exits 0 when everything was accepted,
    /// and a second run with the same nonce file is not a replay.
    /// Issue 15: devices whose first minute runs without NTP, whose reads take 150 ms, with single-sample batches
    /// (0x71 after the eighth) and uploads that fail for about twelve periods, so that their backlog comes back in the
    /// firmware's push-back order: the run reads every device's samples back, and every reading that reached the
    /// server is stored with the value read, at the time it was read.
    @Test func everyReadingThatReachesTheServerIsStoredWithItsValueAndTime() async throws {
        let test = try await TestServer(faultInjection: true)
        test.clock.followWallClock()
        try await test.run { client in
            let port = try #require(client.port)
            var options = SimulationOptions(baseURL: "http://127.0.0.1:\(port)")
            options.idPrefix = "SIM_FID_"
            options.devices = 2
            options.duration = 300  // ended by `stop`
            options.speed = 10
            options.rampUp = 0.1
            options.intervals.poll = 5
            options.intervals.upload = 5
            options.intervals.ota = 100_000
            options.ntpDelay = 60
            options.modbusReadTime = 0.15
            options.operatorToken = test.server.operatorToken
            let latest = LatestReport()
            let stop = SimulationStop()
            let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
            try await latest.wait { $0.packetsByMarker["0x71", default: 0] >= 4 }
            let inject = try await client.operatorJSON(
                .post,
                "/api/v1/faults/network",
                #"{"kind":"disconnect","target_endpoint":"/aggregated","probability":1}"#,
                server: test
            )
            #expect(inject.status == .ok || inject.status == .created)
            try await latest.wait { $0.packetsCompressed - $0.packetsUploaded >= 24 }  // 12 per device, the ring holds 20
            #expect(try await client.operatorJSON(.delete, "/api/v1/faults", nil, server: test).status == .ok)
            try await latest.wait { $0.packetsUploaded == $0.packetsCompressed }
            let caughtUp = latest.get()?.uploadsAccepted ?? 0
            try await latest.wait { $0.uploadsAccepted >= caughtUp + 6 }
            stop.request()
            let report = try await fleet.value
            #expect(report.uploadsRejected > 0 && report.samplesDropped == 0 && report.samplesOverwritten == 0)
            let delivered = report.samplesRead - report.samplesUnsent
            let exactly = try #require(report.samplesStoredExactly)
            #expect(exactly + (report.samplesStoredApproximately ?? 0) == delivered, "\(report.rendered())")
            #expect(exactly > delivered * 9 / 10)
            #expect((report.worstSampleTimeErrorMs ?? .max) <= 1_500)
            let stats = try await client.execute(uri: "/api/v1/stats", method: .get, headers: test.operatorHeaders)
            let compression = stats.json["compression"] as? [String: Any]
            #expect((compression?["completed_packets"] as? Int ?? 0) > 0, "0x71 packets decoded when their predecessors came")
        }
    }

    @Test func simulateCommandRunsTwiceWithPersistedNonces() async throws {
        let test = try await TestServer()
        // The simulator runs on the wall clock; so must the server that places its pre-NTP readings by arrival time.
        test.clock.followWallClock()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sim-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        try await test.run { client in
            let port = try #require(client.port)
            let nonces = scratch.appendingPathComponent("nonces.json").path
            for run in 1...2 {
                let reportFile = scratch.appendingPathComponent("report-\(run).json")
                // 10 s: a loaded full test run once took all of 5 s for the boot requests (up to 2.3 s each), and no
                // upload was left to carry a nonce over.
                let (status, stdout, stderr) = try await ServerProcess.runCLI([
                    "simulate", "--url", "http://127.0.0.1:\(port)", "--devices", "2", "--duration", "10", "--speed", "20",
                    "--keys-dir", scratch.appendingPathComponent("no-keys").path, "--nonce-file", nonces,
                    "--report-json", reportFile.path, "--id-prefix", "CLI_SIM_",
                ])
                #expect(status == 0, "run \(run): \(stdout)\n\(stderr)")
                #expect(stdout.contains("POST /aggregated/{id}"))
                #expect(stderr.contains("OTA checks are off"))
                let report = try JSONParser.parse(Array(try Data(contentsOf: reportFile)))
                #expect(report["clean"] == .bool(true), "run \(run): \(report.serialized)")
                #expect((report["uploads_accepted"]?.intValue ?? 0) > 0)
                #expect(report["uploads_rejected"] == .int(0))
            }
            let saved = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: nonces))))
            #expect((saved["CLI_SIM_001"]?.intValue ?? 0) > 11001)
            // With the operator token (the server's keys directory) and 200 ms reads, the run reads the samples back:
            // with NTP synced at boot every reading that was uploaded is stored exactly.
            let keysDir = test.directory.appendingPathComponent("keys").path
            func verifiedRun(
                _ name: String,
                speed: String,
                duration: String,
                ntpDelay: String
            ) async throws -> (read: Int64, uploaded: Int64, stored: Int64, text: String) {
                let file = scratch.appendingPathComponent("report-\(name).json")
                let (status, stdout, stderr) = try await ServerProcess.runCLI([
                    "simulate", "--url", "http://127.0.0.1:\(port)", "--devices", "2", "--duration", duration, "--speed", speed,
                    "--keys-dir", keysDir, "--verify", "--ntp-delay", ntpDelay, "--modbus-read-time", "0.2",
                    "--report-json", file.path, "--id-prefix", "CLI_\(name)_",
                ])
                #expect(status == 0, "\(stdout)\n\(stderr)")
                #expect(stdout.contains("stored exactly"))
                let report = try JSONParser.parse(Array(try Data(contentsOf: file)))
                let read = report["samples_read"]?.intValue ?? 0
                let unsent = report["samples_unsent"]?.intValue ?? 0
                let stored = (report["samples_stored_exactly"]?.intValue ?? 0) + (report["samples_stored_approximately"]?.intValue ?? 0)
                return (read, read - unsent, stored, report.serialized)
            }
            // Real time (speed 1): an upload task that runs late stamps its packet late by the stall times the speed,
            // and the tolerance is 1.5 device seconds, so 1.5 s of real time here. A loaded CI machine exceeded 150 ms
            // at speed 10, 300 ms at speed 5 (uploads taking up to 432 ms), and once 750 ms at speed 2 (one reading of
            // ten off by more, polls taking up to 264 ms).
            let synced = try await verifiedRun("SYNC", speed: "1", duration: "20", ntpDelay: "0")
            #expect(synced.read > 0 && synced.stored == synced.uploaded, "\(synced.text)")
            // NTP 20 device seconds after boot: readings before it are stamped with millis() (spec §0.6), and the server
            // places them by its own clock (arrival time − uptime), hence `followWallClock` above: on the test clock,
            // frozen at the server's start, they were stored 52-59 s early. A sped-up run's device clocks also run ahead
            // of the server's, so a reading taken before the sync, or in the first batch stamped after it (spread from
            // the estimated stamp before it), may be off by the run's skew; the verifier allows that for those readings
            // only (`SampleVerificationTests`). Real time, as above: at speed 2 a stall of 0.75 s would already break
            // the 1.5 s window of the others.
            let late = try await verifiedRun("NTP", speed: "1", duration: "25", ntpDelay: "20")
            #expect(late.read > 0 && late.stored > 0 && late.stored == late.uploaded, "\(late.text)")
        }
    }
}
