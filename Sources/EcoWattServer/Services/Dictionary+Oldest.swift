extension Dictionary {
    /// Drops the entries whose `age` sorts first until `count` remain, skipping those `removable` refuses. The bounded
    /// in-memory tables (the ingest cache, the login throttle, the device event log) trim in bulk with it: well below
    /// their cap, so that one new key at a time does not pay a scan.
    ///
    /// Sorts (age, key) pairs, not copies of the entries, so a trim of 200 000 ingest states holds less memory while it
    /// runs.
    mutating func removeOldest<Age: Comparable>(
        keeping count: Int,
        age: (Value) -> Age,
        removable: (Value) -> Bool = { _ in true }
    ) {
        guard self.count > count else { return }
        var candidates: [(age: Age, key: Key)] = []
        candidates.reserveCapacity(self.count)
        for (key, value) in self where removable(value) { candidates.append((age(value), key)) }
        candidates.sort { $0.age < $1.age }
        for (_, key) in candidates.prefix(self.count - count) { self[key] = nil }
    }
}
