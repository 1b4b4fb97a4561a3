extension InMemoryStore {
    public func rollups(
        deviceID: String,
        resolution: RollupResolution,
        fromMs: Int64,
        toMs: Int64,
        limit: Int
    ) async throws -> [TelemetryRollup] {
        let start = resolution.bucket(of: fromMs)
        return state.withLock { state in
            Array(
                (state.rollups[deviceID]?[resolution] ?? [:]).values.filter { $0.bucketMs >= start && $0.bucketMs <= toMs }
                    .sorted { $0.bucketMs < $1.bucketMs }.prefix(limit)
            )
        }
    }

    /// The same ranges as the SQLite store: whole hours around what changed, never below what retention dropped.
    public func refreshRollups(limit: Int) async throws -> Int {
        state.withLock { state in
            let devices = Array(state.changed.keys.sorted().prefix(limit))
            for device in devices {
                guard let range = state.changed.removeValue(forKey: device) else { continue }
                guard
                    let plan = RollupRefreshRange(changedFrom: range.lowerBound, changedTo: range.upperBound, floorMs: state.rollupFloors[device])
                else { continue }
                let (from, to) = (plan.from, plan.to)
                if to < plan.end { state.changed[device] = (to &+ 1)...range.upperBound }
                let samples = (state.samples[device] ?? []).filter { (from...to).contains($0.timestampMs) }
                    .map { (time: $0.timestampMs, layout: $0.registerLayout, values: $0.rawValues) }
                for resolution in RollupResolution.allCases {
                    var kept = (state.rollups[device]?[resolution] ?? [:]).filter { !(from...to).contains($0.key) }
                    kept.merge(TelemetryRollup.aggregate(samples, resolution: resolution)) { $1 }
                    state.rollups[device, default: [:]][resolution] = kept
                }
            }
            return devices.count
        }
    }

    /// Drops packets that arrived before the raw cutoff (with their samples) and rollups before theirs; returns how many
    /// packets and rollups.
    public func pruneTelemetry(_ cutoffs: TelemetryCutoffs, limit: Int) async throws -> Int {
        state.withLock { state in
            var dropped = 0
            for device in state.packets.keys.sorted() {
                let doomed = Set(
                    (state.packets[device] ?? []).map(\.id).filter { (state.packetFacts[$0]?.receivedAtMs ?? .min) < cutoffs.rawBeforeMs }
                )
                guard !doomed.isEmpty else { continue }
                let gone = Set(doomed.flatMap { state.packetSamples[$0] ?? [] })
                let samples = state.samples[device] ?? []
                if let latest = gone.map({ samples[$0].timestampMs }).max() {
                    state.rollupFloors[device] = max(state.rollupFloors[device] ?? .min, latest)
                }
                // Renumber where the kept packets' samples are.
                var newIndex: [Int: Int] = [:]
                var kept: [SampleRow] = []
                for (index, sample) in samples.enumerated() where !gone.contains(index) {
                    newIndex[index] = kept.count
                    kept.append(sample)
                }
                state.samples[device] = kept
                state.packets[device]?.removeAll { doomed.contains($0.id) }
                for packet in state.packets[device] ?? [] {
                    state.packetSamples[packet.id] = state.packetSamples[packet.id]?.compactMap { newIndex[$0] }
                }
                for id in doomed {
                    state.packetSamples[id] = nil
                    state.packetFacts[id] = nil
                }
                dropped += doomed.count
            }
            for device in state.rollups.keys {
                for resolution in RollupResolution.allCases {
                    let cutoff = cutoffs.rollupsBeforeMs(resolution)
                    let before = state.rollups[device]?[resolution]?.count ?? 0
                    let kept = state.rollups[device]?[resolution]?.filter { $0.key >= cutoff }
                    state.rollups[device]?[resolution] = kept
                    dropped += before - (state.rollups[device]?[resolution]?.count ?? 0)
                }
            }
            return dropped
        }
    }
}
