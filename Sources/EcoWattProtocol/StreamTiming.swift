/// Sample times inside a packet (spec §3.6.5, issue 15). The device sends only its last sample's time. Samples are
/// spread evenly between the previous packet's last sample and this one's: that follows the real sensor period (poll
/// interval plus the Modbus read time, tens of seconds over a 50-sample batch) and the old interval after an interval
/// change that the upload already reports. The nominal interval is used for the first packet of a boot, after a
/// missing batch, and across a gap longer than the batch can have taken.
extension DeviceStreamState {
    struct Predecessor {
        /// The previous packet (`0` when only its time is known), `nil` for a boot start or nothing.
        var serial: Int64?
        var timeMs: Int64?
        var interval: Int?
    }

    /// What comes right before `entries[index]` in its boot: the previous packet, or the announced boot start.
    func timingPredecessor(of index: Int) -> Predecessor {
        let entry = entries[index]
        let boot = hypotheses.last { $0.startSerial < entry.serial } ?? hypotheses[0]
        if let previous = entries[..<index].last(where: { $0.serial > boot.startSerial }) {
            return Predecessor(serial: previous.serial, timeMs: previous.timeMs, interval: previous.intervalSeconds)
        }
        if let trimmed, trimmed.serial > boot.startSerial, trimmed.timeMs < entry.timeMs {
            return Predecessor(serial: trimmed.serial, timeMs: trimmed.timeMs, interval: trimmed.intervalSeconds)
        }
        if let time = boot.frontierTimeMs, time < entry.timeMs {
            // The boot's model went past a packet that was trimmed since: it is the predecessor.
            return Predecessor(serial: boot.frontier ?? 0, timeMs: time, interval: boot.frontierInterval)
        }
        return Predecessor(serial: nil, timeMs: boot.startTimeMs, interval: nil)
    }

    /// The times of all `sampleCount` samples of `entries[index]`, and the packet they were spread after (`nil`: the
    /// nominal interval, anchored at the last sample).
    func sampleTimes(of index: Int) -> (times: [Int64], after: Int64?) {
        let entry = entries[index]
        let count = entry.sampleCount
        let last = entry.timeMs
        let intervalMs = Int64(max(1, entry.intervalSeconds)) * 1000
        let nominal = (0..<count).map { last - Int64(count - 1 - $0) * intervalMs }
        let previous = timingPredecessor(of: index)
        guard let previousTime = previous.timeMs, previousTime < last else { return (nominal, nil) }
        let span = last - previousTime
        func spread() -> [Int64] {
            var times = (0..<count).map { previousTime + span * Int64($0 + 1) / Int64(count) }
            for index in times.indices.dropFirst() where times[index] <= times[index - 1] { times[index] = times[index - 1] + 1 }
            return times
        }
        if let serial = previous.serial, let split = splitAtIntervalChange(entry, after: previousTime, previousInterval: previous.interval) {
            return (split, serial)
        }
        if let serial = previous.serial {
            let shortest = Int64(max(1, min(entry.intervalSeconds, previous.interval ?? entry.intervalSeconds))) * 1000
            let contiguous =
                !entry.holeBefore && Self.gap(before: entry, after: previousTime, previousInterval: previous.interval) == .contiguous
            // A quarter of the interval allows for the Modbus read time of every sample.
            let withinBatch = span < Int64(count + 1) * shortest * 5 / 4 - 1000
            if contiguous && withinBatch { return (spread(), serial) }
            if nominal[0] <= previousTime { return (spread(), serial) }
            return (nominal, nil)
        }
        // After a boot start: no sample before it.
        return (nominal[0] <= previousTime ? spread() : nominal, nil)
    }

    /// A packet after an acknowledged change of the sampling interval: the samples that fit before the change at the
    /// old interval, the rest spread between the change and the last sample (the firmware restarts its sensor timer
    /// when it applies the change).
    private func splitAtIntervalChange(_ entry: ChainEntry, after previousTime: Int64, previousInterval: Int?) -> [Int64]? {
        guard let change = configurationAppliedMs, previousTime < change, change < entry.timeMs,
            let old = previousInterval, old != entry.intervalSeconds, old > 0
        else { return nil }
        let count = entry.sampleCount
        let oldMs = Int64(old) * 1000
        let before = Int(min(Int64(count - 1), (change - previousTime) / oldMs))
        let after = count - before
        let span = entry.timeMs - change
        var times: [Int64] = (0..<before).map { previousTime + Int64($0 + 1) * oldMs }
        for index in 0..<after { times.append(change + span * Int64(index + 1) / Int64(after)) }
        return zip(times, times.dropFirst()).allSatisfy { $0 < $1 } ? times : nil
    }
}
