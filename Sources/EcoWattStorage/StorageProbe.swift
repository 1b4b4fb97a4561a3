/// The readiness check of a storage backend (`GET /ready`): whether it answers a read and its writes are not stalled.
public protocol StorageProbe: Sendable {
    func probe(stalledAfter: Duration) async -> (ready: Bool, detail: String)
}
