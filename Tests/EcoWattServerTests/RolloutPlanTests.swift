import EcoWattServer
import EcoWattStorage
import Testing

/// The pure rules of staged rollouts (issue 21): wave membership and the decisions.
@Suite struct RolloutPlanTests {
    typealias State = RolloutPlan.DeviceState

    static let fleet = (1...1000).map { "DEV-\($0)" }

    @Test func wavesHoldTheirPercentagesAndAMinimumEach() {
        #expect(RolloutPlan.waveEnds(count: 1000, percents: [1, 10, 50, 100], minPerWave: 1) == [10, 100, 500, 1000])
        #expect(RolloutPlan.waveEnds(count: 40, percents: [1, 10, 50, 100], minPerWave: 5) == [5, 10, 20, 40], "1 % of 40 is 1: raised to 5")
        #expect(RolloutPlan.waveEnds(count: 3, percents: [1, 10, 50, 100], minPerWave: 2) == [2, 3, 3, 3])
        #expect(RolloutPlan.waveEnds(count: 10, percents: [20, 50], minPerWave: 1) == [2, 5, 10], "a last wave takes the rest")
        #expect(RolloutPlan.waveEnds(count: 0, percents: [1, 100], minPerWave: 1) == [0, 0])
        let waves = RolloutPlan.waves(rolloutID: "r1", devices: Self.fleet, percents: [1, 10, 50, 100], minPerWave: 1)
        let sizes = (0..<4).map { wave in waves.values.filter { $0 == wave }.count }
        #expect(sizes == [10, 90, 400, 500])
    }

    @Test func membershipIsStableAcrossOrderAndAddedDuplicatesAndDiffersPerRollout() {
        let first = RolloutPlan.waves(rolloutID: "r1", devices: Self.fleet, percents: [1, 10, 50, 100], minPerWave: 1)
        let shuffled = RolloutPlan.waves(
            rolloutID: "r1",
            devices: Self.fleet.shuffled() + ["DEV-7"],
            percents: [1, 10, 50, 100],
            minPerWave: 1
        )
        #expect(first == shuffled)
        let other = RolloutPlan.waves(rolloutID: "r2", devices: Self.fleet, percents: [1, 10, 50, 100], minPerWave: 1)
        let firstWave = Set(first.filter { $0.value == 0 }.keys)
        #expect(firstWave != Set(other.filter { $0.value == 0 }.keys), "another rollout picks other canaries")
    }

    static func tally(_ counts: [State: Int], pending: Int = 0) -> RolloutPlan.Tally {
        RolloutPlan.Tally(counts.flatMap { Array(repeating: $0.key, count: $0.value) } + Array(repeating: .pending, count: pending))
    }

    @Test func aWaveAdvancesOnceEnoughStartedDevicesFinishedHealthy() {
        let rules = RolloutPlan.Thresholds()
        // Ten canaries: three healthy, one still downloading, six have not checked yet.
        var wave = Self.tally([.healthy: 3, .downloading: 1], pending: 6)
        #expect(RolloutPlan.decide(overall: wave, wave: wave, isLastWave: false, thresholds: rules) == .hold)
        wave = Self.tally([.healthy: 5], pending: 5)
        #expect(RolloutPlan.decide(overall: wave, wave: wave, isLastWave: false, thresholds: rules) == .advance)
        wave = Self.tally([.healthy: 4, .installed: 1], pending: 5)
        #expect(RolloutPlan.decide(overall: wave, wave: wave, isLastWave: false, thresholds: rules) == .hold, "installed is not healthy yet")
        // A wave smaller than the minimum needs all of it.
        let small = Self.tally([.healthy: 2])
        #expect(RolloutPlan.decide(overall: small, wave: small, isLastWave: false, thresholds: rules) == .advance)
        // The last wave completes when every device finished.
        let last = Self.tally([.healthy: 20], pending: 1)
        #expect(RolloutPlan.decide(overall: last, wave: last, isLastWave: true, thresholds: rules) == .hold)
        let done = Self.tally([.healthy: 21])
        #expect(RolloutPlan.decide(overall: done, wave: done, isLastWave: true, thresholds: rules) == .complete)
    }

    @Test func failuresHaltTheRolloutOverAllWaves() {
        var rules = RolloutPlan.Thresholds()
        // 1 of 4 finished failed: 25 %, but fewer than 5 finished: no verdict yet.
        let early = Self.tally([.healthy: 3, .failed: 1])
        #expect(RolloutPlan.decide(overall: early, wave: early, isLastWave: false, thresholds: rules) == .hold)
        let bad = Self.tally([.healthy: 4, .failed: 1])
        guard case .halt(let reason) = RolloutPlan.decide(overall: bad, wave: bad, isLastWave: false, thresholds: rules) else {
            Issue.record("1 of 5 failed (20 % ≥ 10 %): halt")
            return
        }
        #expect(reason.contains("1 of 5") && reason.contains("20 %"))
        // Earlier waves count: the current wave is clean, the rollout is not.
        let overall = Self.tally([.healthy: 90, .failed: 10])
        let current = Self.tally([.healthy: 5])
        #expect(
            RolloutPlan.decide(overall: overall, wave: current, isLastWave: false, thresholds: rules)
                == .halt(reason: "10 of 100 finished devices failed (10 %, limit 10 %)")
        )
        rules.haltFailureCount = 3
        let absolute = Self.tally([.healthy: 200, .failed: 3])
        #expect(
            RolloutPlan.decide(overall: absolute, wave: absolute, isLastWave: false, thresholds: rules) == .halt(reason: "3 devices failed (limit 3)")
        )
        // Below the success ratio without reaching the halt share: the wave waits for an operator.
        rules = RolloutPlan.Thresholds()
        rules.successPercent = 99
        let mediocre = Self.tally([.healthy: 95, .failed: 5])
        #expect(RolloutPlan.decide(overall: mediocre, wave: mediocre, isLastWave: false, thresholds: rules) == .hold)
    }

    /// An operator who resumes a halted rollout has judged the failures so far: the halt rules count what finished
    /// since, with the same thresholds.
    @Test func aResumedRolloutHaltsOnlyOnFailuresSinceItsResume() {
        let rules = RolloutPlan.Thresholds()
        let atResume = Self.tally([.healthy: 4, .failed: 2, .pending: 20])
        let resumedWith = (failed: atResume[.failed], finished: atResume.finished)
        #expect(RolloutPlan.decide(overall: atResume, wave: atResume, isLastWave: false, thresholds: rules) != .hold, "halted before")
        #expect(RolloutPlan.decide(overall: atResume, wave: atResume, isLastWave: false, thresholds: rules, beforeResume: resumedWith) == .hold)
        // Four healthy since, one failure: 1 of 5 finished since the resume is 20 %.
        let later = Self.tally([.healthy: 8, .failed: 3, .pending: 15])
        #expect(
            RolloutPlan.decide(overall: later, wave: later, isLastWave: false, thresholds: rules, beforeResume: resumedWith)
                == .halt(reason: "1 of 5 finished devices failed since it was resumed (20 %, limit 10 %)")
        )
        // Retried failures (back to pending) never make the counts negative.
        let retried = Self.tally([.healthy: 4, .pending: 22])
        #expect(RolloutPlan.decide(overall: retried, wave: retried, isLastWave: false, thresholds: rules, beforeResume: resumedWith) == .hold)
    }
}
