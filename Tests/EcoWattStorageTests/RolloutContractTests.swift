import EcoWattStorage
import Foundation
import Testing

/// The contract of ``RolloutStore`` (issue 21), against every backend.
@Suite struct RolloutContractTests {
    static func devices(_ ids: [String], waves: [Int]) -> [RolloutDeviceRecord] {
        zip(ids, waves).map { RolloutDeviceRecord(deviceID: $0, wave: $1, fromVersion: "1.0.0", nowMs: 1) }
    }

    @Test(arguments: StoreContractTests.Backend.allCases) func rolloutsKeepTheirDevicesWavesAndTimelines(
        _ backend: StoreContractTests.Backend
    ) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.devices
            var settings = RolloutSettings()
            settings.wavePercents = [20, 100]
            settings.haltFailureCount = 3
            let created = try await store.createRollout(
                RolloutRecord(version: "2.0.0", settings: settings, waveCount: 2, createdBy: "user:olga", notes: "canary", nowMs: 10),
                devices: Self.devices(["A", "B", "C", "D", "E"], waves: [0, 1, 1, 1, 1])
            )
            #expect(created.id > 0 && created.status == .active && created.currentWave == 0)
            #expect(try await store.rollout(id: created.id) == created, "settings and fields come back as stored")
            #expect(try await store.rollout(id: created.id + 100) == nil)

            let wave1 = try await store.rolloutDevices(rolloutID: created.id, wave: 1, state: nil, after: "B", limit: 2)
            #expect(wave1.map(\.deviceID) == ["C", "D"] && wave1.allSatisfy { $0.state == .pending && $0.fromVersion == "1.0.0" })

            let read = try #require(try await store.openRolloutEntry(deviceID: "A")?.device)
            var device = read
            device.state = .installed
            device.offeredAtMs = 20
            device.startedAtMs = 21
            device.installedAtMs = 30
            device.healthyUploads = 2
            device.updatedAtMs = 30
            #expect(try await store.updateRolloutDevice(device, from: read))
            let entry = try #require(try await store.openRolloutEntry(deviceID: "A"))
            #expect(entry.device == device && entry.rollout.id == created.id)
            // A writer that read before that write is refused (another instance, the evaluator): nothing changes.
            var stale = read
            stale.state = .failed
            stale.reason = "download_timeout"
            stale.updatedAtMs = 31
            #expect(try await store.updateRolloutDevice(stale, from: read) == false)
            #expect(try await store.openRolloutEntry(deviceID: "A")?.device == device)
            #expect(
                try await store.rolloutDevices(rolloutID: created.id, wave: nil, state: .installed, after: nil, limit: 10).map(\.deviceID) == ["A"]
            )
            #expect(try await store.rolloutCounts(rolloutID: created.id) == [0: [.installed: 1], 1: [.pending: 4]])

            // A device is in one open rollout at a time; halted still owns it, a cancelled one frees it.
            await #expect(throws: RolloutStoreError.devicesInOpenRollout(rolloutID: created.id, deviceIDs: ["B", "E"])) {
                try await store.createRollout(
                    RolloutRecord(version: "2.0.1", settings: RolloutSettings(), waveCount: 1, createdBy: "x", nowMs: 40),
                    devices: Self.devices(["B", "E", "F"], waves: [0, 0, 0])
                )
            }
            var halted = created
            halted.status = .halted
            halted.reason = "3 devices failed (limit 3)"
            halted.currentWave = 1
            halted.waveOpenedAtMs = 50
            halted.updatedAtMs = 50
            #expect(try await store.updateRollout(halted, from: created))
            #expect(try await store.rollout(id: created.id) == halted)
            // An evaluator that read the rollout before the halt cannot advance it over the halt.
            var advanced = created
            advanced.currentWave = 1
            advanced.waveOpenedAtMs = 51
            advanced.updatedAtMs = 51
            #expect(try await store.updateRollout(advanced, from: created) == false)
            #expect(try await store.rollout(id: created.id) == halted)
            #expect(try await store.openRolloutEntry(deviceID: "B")?.rollout.status == .halted)
            // Resumed: the counts its halt rules start from are kept with it.
            var resumed = halted
            resumed.status = .active
            resumed.reason = nil
            resumed.failedBeforeResume = 3
            resumed.finishedBeforeResume = 7
            resumed.updatedAtMs = 55
            #expect(try await store.updateRollout(resumed, from: halted))
            #expect(try await store.rollout(id: created.id) == resumed)
            #expect(try await store.openRolloutEntry(deviceID: "B")?.rollout == resumed)
            var cancelled = resumed
            cancelled.status = .cancelled
            #expect(try await store.updateRollout(cancelled, from: resumed))
            #expect(try await store.openRolloutEntry(deviceID: "B") == nil)
            let second = try await store.createRollout(
                RolloutRecord(version: "2.0.1", settings: RolloutSettings(), waveCount: 1, rollbackOf: created.id, createdBy: "x", nowMs: 60),
                devices: Self.devices(["B", "F"], waves: [0, 0])
            )
            #expect(second.id > created.id && second.rollbackOf == created.id)
            #expect(try await store.openRolloutEntry(deviceID: "B")?.rollout.id == second.id)
            #expect(try await store.rollouts(status: nil, before: nil, limit: 10).map(\.id) == [second.id, created.id])
            #expect(try await store.rollouts(status: .cancelled, before: nil, limit: 10).map(\.id) == [created.id])
            #expect(try await store.rollouts(status: nil, before: second.id, limit: 10).map(\.id) == [created.id])
        }
    }

    @Test(arguments: StoreContractTests.Backend.allCases) func devicesJoinAndLeaveAnOpenRolloutOneRolloutAtATime(
        _ backend: StoreContractTests.Backend
    ) async throws {
        try await BackendStores.with(backend) { stores in
            let store = stores.devices
            var settings = RolloutSettings()
            settings.kind = .deployment
            settings.followsFleet = true
            settings.maxAttempts = 4
            let fleet = try await store.createRollout(
                RolloutRecord(version: "3.0.0", settings: settings, waveCount: 1, createdBy: "x", nowMs: 10),
                devices: Self.devices(["J1"], waves: [0])
            )
            #expect(try await store.rollout(id: fleet.id)?.settings == settings, "kind, following and attempts are kept")
            try await store.addRolloutDevices(rolloutID: fleet.id, devices: Self.devices(["J2", "J3"], waves: [0, 0]))
            #expect(try await store.openRolloutEntry(deviceID: "J2")?.rollout.id == fleet.id)
            let other = try await store.createRollout(
                RolloutRecord(version: "3.0.1", settings: RolloutSettings(), waveCount: 1, createdBy: "x", nowMs: 20),
                devices: Self.devices(["K1"], waves: [0])
            )
            await #expect(throws: RolloutStoreError.devicesInOpenRollout(rolloutID: fleet.id, deviceIDs: ["J3"])) {
                try await store.addRolloutDevices(rolloutID: other.id, devices: Self.devices(["J3", "K2"], waves: [0, 0]))
            }
            #expect(try await store.openRolloutEntry(deviceID: "K2") == nil, "nothing of a refused addition is stored")
            #expect(try await store.releaseRolloutDevices(rolloutID: fleet.id, deviceIDs: ["J1", "J3", "NOT-IN-IT"]) == 2)
            #expect(try await store.allRolloutDevices(rolloutID: fleet.id, state: nil).map(\.deviceID) == ["J2"])
            try await store.addRolloutDevices(rolloutID: other.id, devices: Self.devices(["J3"], waves: [0]))
            #expect(try await store.openRolloutEntry(deviceID: "J3")?.rollout.id == other.id, "a released device may join another")
        }
    }

    @Test func settingsStoredBeforeAFieldExistedDecodeWithItsDefault() throws {
        let stored = #"{"wavePercents":[5,100],"minDevicesPerWave":2,"successPercent":90,"haltFailurePercent":20,"minFinished":3}"#
        let settings = try JSONDecoder().decode(RolloutSettings.self, from: Data(stored.utf8))
        #expect(settings.wavePercents == [5, 100] && settings.minDevicesPerWave == 2 && settings.haltFailurePercent == 20)
        #expect(settings.kind == .staged && settings.maxAttempts == 1 && !settings.followsFleet && settings.healthUploads == 3)
    }
}
