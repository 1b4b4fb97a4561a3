import Synchronization

/// Ends a run early and gracefully: each device finishes the task it is running (no upload or command left half done)
/// and stops. `ecowatt simulate` requests it on the first Ctrl-C.
public final class SimulationStop: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public func request() { flag.store(true, ordering: .relaxed) }

    public var isRequested: Bool { flag.load(ordering: .relaxed) }
}
