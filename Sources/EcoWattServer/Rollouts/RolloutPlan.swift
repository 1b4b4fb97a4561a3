import Crypto
import EcoWattStorage

/// The pure rules of a staged rollout (issue 21): who is in which wave, and what the evidence so far decides. No I/O:
/// the rollout service feeds it the devices' states and applies the decision.
public enum RolloutPlan {
    public typealias DeviceState = RolloutDeviceState

    /// The thresholds of one rollout (defaults from the issue: hawkBit, AWS IoT Jobs and Mender use the same kinds).
    public struct Thresholds: Sendable, Equatable {
        /// A wave advances when at least this share of its finished devices is healthy.
        public var successPercent = 95
        /// The rollout halts when failures reach this share of the devices finished so far, over all waves...
        public var haltFailurePercent = 10
        /// ...once at least this many devices have finished; a wave also needs this many finished (or all of it) to
        /// advance, so one early success does not open the next wave.
        public var minFinished = 5
        /// The rollout halts at this many failures whatever the share (`nil`: no absolute limit).
        public var haltFailureCount: Int?

        public init() {}

        public init(_ settings: RolloutSettings) {
            successPercent = settings.successPercent
            haltFailurePercent = settings.haltFailurePercent
            minFinished = settings.minFinished
            haltFailureCount = settings.haltFailureCount
        }
    }

    /// Counts of one wave (or of the whole rollout).
    public struct Tally: Sendable, Equatable {
        public var targeted = 0
        public var byState: [DeviceState: Int] = [:]

        public init() {}

        public init(_ states: some Sequence<DeviceState>) {
            for state in states {
                targeted += 1
                byState[state, default: 0] += 1
            }
        }

        /// The counts of several waves together (a store's `rolloutCounts`, or one wave of it).
        public init(waves: some Sequence<[DeviceState: Int]>) {
            for wave in waves {
                for (state, count) in wave {
                    targeted += count
                    byState[state, default: 0] += count
                }
            }
        }

        public subscript(state: DeviceState) -> Int { byState[state] ?? 0 }
        public var started: Int { byState.reduce(0) { $0 + ($1.key.started ? $1.value : 0) } }
        public var finished: Int { self[.healthy] + self[.failed] }
        /// Started and not finished: downloading or installed.
        public var inFlight: Int { started - finished }
    }

    public enum Decision: Sendable, Equatable {
        /// Wait for more evidence.
        case hold
        /// Open the next wave.
        case advance
        /// Stop offering the image; `reason` says which threshold was crossed.
        case halt(reason: String)
        /// The last wave finished: every device that started has finished, at the success ratio.
        case complete
    }

    /// The wave of each device (0-based): devices ranked by SHA-256 of the rollout id and the device id, and the first
    /// `ceil(p × n / 100)` of them within waves up to the one of percentage `p` — at least `minPerWave` more each wave
    /// (while devices remain), all of them in the last. The rank depends only on the two ids, so membership never
    /// reshuffles: not across restarts, not when the device list is read in another order.
    public static func waves(rolloutID: String, devices: [String], percents: [Int], minPerWave: Int) -> [String: Int] {
        let ranked = Set(devices).map { (rank: rank(rolloutID, $0), id: $0) }
            .sorted { $0.rank.lexicographicallyPrecedes($1.rank) }
            .map(\.id)
        let boundaries = waveEnds(count: ranked.count, percents: percents, minPerWave: minPerWave)
        var wave = 0
        var assignment: [String: Int] = [:]
        for (position, device) in ranked.enumerated() {
            while position >= boundaries[wave] { wave += 1 }
            assignment[device] = wave
        }
        return assignment
    }

    /// How many devices the waves up to each one hold, cumulatively; the last is `count`.
    public static func waveEnds(count: Int, percents: [Int], minPerWave: Int) -> [Int] {
        var ends: [Int] = []
        var previous = 0
        for percent in percents {
            let share = (count * min(max(percent, 0), 100) + 99) / 100
            let end = min(count, max(share, previous + max(minPerWave, 0)))
            ends.append(end)
            previous = end
        }
        if ends.isEmpty || ends[ends.count - 1] < count { ends.append(count) }
        return ends
    }

    static func rank(_ rolloutID: String, _ deviceID: String) -> [UInt8] {
        Array(SHA256.hash(data: Array("\(rolloutID)\u{0}\(deviceID)".utf8)))
    }

    /// What the evidence decides for a rollout whose open waves are `0...current`.
    /// - Parameters:
    ///   - overall: every targeted device (halting looks at all waves).
    ///   - wave: the devices of the current wave.
    ///   - isLastWave: the current wave is the last one.
    ///   - beforeResume: the failed and finished devices when an operator last resumed the rollout from a halt. The
    ///     halt rules count only what finished since: resuming is the operator's call on the failures so far, and
    ///     counting them again would halt the rollout at the next decision, before any device could prove anything.
    public static func decide(
        overall: Tally,
        wave: Tally,
        isLastWave: Bool,
        thresholds: Thresholds,
        beforeResume: (failed: Int, finished: Int) = (0, 0)
    ) -> Decision {
        let failed = max(0, overall[.failed] - beforeResume.failed)
        let finished = max(0, overall.finished - beforeResume.finished)
        let since = beforeResume.finished > 0 ? " since it was resumed" : ""
        if let limit = thresholds.haltFailureCount, failed >= limit {
            return .halt(reason: "\(failed) devices failed\(since) (limit \(limit))")
        }
        if finished >= thresholds.minFinished, failed * 100 >= thresholds.haltFailurePercent * finished, failed > 0 {
            return .halt(
                reason:
                    "\(failed) of \(finished) finished devices failed\(since) (\(failed * 100 / finished) %, limit \(thresholds.haltFailurePercent) %)"
            )
        }
        // The wave's evidence: enough devices finished, none still in flight, and the success ratio met.
        let needed = min(max(wave.targeted, 1), thresholds.minFinished)
        guard wave.finished >= needed, wave.inFlight == 0 else { return .hold }
        guard wave[.healthy] * 100 >= thresholds.successPercent * wave.finished else { return .hold }
        return isLastWave ? (wave.finished == wave.targeted ? .complete : .hold) : .advance
    }
}
