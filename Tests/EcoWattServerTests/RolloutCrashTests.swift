import EcoWattAPI
import EcoWattSimulator
import EcoWattTestSupport
import FirmwareImage
import Foundation
import OpenAPIAsyncHTTPClient
import Testing

/// A rollout across a SIGKILL of the real server process (issue 21), with the fleet simulator running throughout.
@Suite struct RolloutCrashTests {
    @Test func aRolloutKeepsItsWavesAndContinuesAfterTheServerIsKilled() async throws {
        let (keys, vectors) = try OTAHTTPTests.vectors()
        let image = vectors[0]
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rollout-kill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try keys.write(to: root.appendingPathComponent("keys").path)
        try FirmwareDirectory(path: root.appendingPathComponent("firmware").path).save(
            FirmwarePreparer.prepare(image: image.plaintext, version: image.version, keys: keys, iv: image.iv)
        )
        let port = LoopbackPort.free()
        let first = try await ServerProcess(root: root, port: port)
        let token = try String(contentsOf: root.appendingPathComponent("keys/operator_token"), encoding: .utf8)
        let api = Client(
            serverURL: URL(string: "http://127.0.0.1:\(port)")!,
            configuration: .ecoWatt,
            transport: AsyncHTTPClientTransport(),
            middlewares: [BearerToken(token.trimmingCharacters(in: .whitespacesAndNewlines))]
        )
        var options = SimulatorHTTPTests.options(port: port, prefix: "KILL_", devices: 6, keys: keys)
        options.intervals.ota = 5
        options.duration = 150
        let latest = LatestReport()
        let stop = SimulationStop()
        let fleet = Task { try await FleetSimulator(options: options).run(stop: stop) { latest.set($0.report) } }
        try await latest.wait { $0.uploadsAccepted >= 6 }

        let settings = Components.Schemas.RolloutSettings(waves: [34, 67, 100], minFinished: 1, healthUploads: 2)
        let id = try await api.createRollout(body: .json(.init(version: image.version, idPrefix: "KILL_", settings: settings))).created
            .body.json.id
        func rollout() async throws -> Components.Schemas.Rollout { try await api.getRollout(path: .init(rolloutId: id)).ok.body.json }
        func waves() async throws -> [String: Int] {
            let devices = try await api.listRolloutDevices(path: .init(rolloutId: id)).ok.body.json.items
            return Dictionary(uniqueKeysWithValues: devices.map { ($0.deviceId, $0.wave) })
        }
        let drawn = try await waves()
        #expect(drawn.count == 6 && Set(drawn.values) == [1, 2, 3], "\(drawn)")

        // Wave 2 open; paused so that no device is between its install and its boot report when the server dies (a
        // report lost to a dead server leaves that device downloading until the download timeout).
        var deadline = ContinuousClock.now + .seconds(60)
        while try await rollout().currentWave < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(300)) }
        _ = try await api.pauseRollout(path: .init(rolloutId: id)).ok
        deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let counts = try await rollout().counts?.additionalProperties ?? [:]
            if (counts["downloading"] ?? 0) + (counts["installed"] ?? 0) == 0 { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        let before = try await rollout()
        #expect(before.currentWave == 2 && (before.counts?.additionalProperties["healthy"] ?? 0) >= 2, "\(before)")
        _ = try await first.stop(signal: SIGKILL)

        // The same data directory: the same waves, states and wave; resumed, it runs to the end.
        let second = try await ServerProcess(root: root, port: port)
        let after = try await rollout()
        #expect(after.status == .paused && after.currentWave == 2 && after.counts == before.counts, "\(after)")
        #expect(try await waves() == drawn, "wave membership survives the crash")
        _ = try await api.resumeRollout(path: .init(rolloutId: id)).ok
        deadline = ContinuousClock.now + .seconds(90)
        var done = after
        while ContinuousClock.now < deadline {
            done = try await rollout()
            if done.status != .active { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        stop.request()
        _ = try await fleet.value
        #expect(done.status == .completed && done.counts?.additionalProperties == ["healthy": 6], "\(done)")
        _ = try await second.stop(signal: SIGTERM)
    }
}
