import EcoWattStorage
import ServiceLifecycle
import Synchronization

/// Change notices for the dashboard's live streams (issue 20): the services say what changed for which device — a
/// stored upload (`sample`), a command's state (`commands`), an OTA session (`ota`), a refused upload or a failed
/// update (`problems`) — and each open stream is woken with the topics that concern it, so a stream reads from the
/// store only what changed, when it changed. The fleet summary (in-memory counts) is computed once per tick for all
/// streams, and they are told only when it differs. Streams of the whole fleet hear every device's `ota` (the firmware
/// page's download progress) and nothing else per device.
///
/// Wake-ups coalesce: a stream's signal holds at most one pending wake and its topics accumulate until it reads them.
/// The tick also wakes every stream, which is when streams check their deadline, their credentials and keep-alives.
public final class LiveEvents: Service, Sendable {
    public enum Topic: String, Sendable, CaseIterable {
        case summary, sample, commands, ota, problems
    }

    struct Subscription: Sendable {
        let id: Int
        let wakes: AsyncStream<Void>
    }

    private struct Subscriber {
        let deviceID: String?
        var dirty: Set<Topic>
        let wake: AsyncStream<Void>.Continuation
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var byDevice: [String: Set<Int>] = [:]
        var fleet: Set<Int> = []
        var next = 0
        var summary = ""
        var closed = false
    }

    public static let tick = Duration.seconds(2)
    private let state = Mutex(State())
    /// The fleet summary as the streams send it (JSON), computed once per tick; set once the services it reads exist
    /// (they are told about changes through this object, so it is made first).
    private let summarize = Mutex<@Sendable () -> String>({ "" })

    public init() {}

    func summarize(with summary: @escaping @Sendable () -> String) {
        summarize.withLock { $0 = summary }
    }

    private func summary() -> String { summarize.withLock { $0 }() }

    /// Streams open now.
    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// A new stream, woken at once (it sends everything first); `nil` once the server is shutting down.
    func subscribe(deviceID: String?) -> Subscription? {
        let (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let id: Int? = state.withLock { state in
            guard !state.closed else { return nil }
            state.next += 1
            let id = state.next
            state.subscribers[id] = Subscriber(deviceID: deviceID, dirty: Set(Topic.allCases), wake: wake)
            if let deviceID { state.byDevice[deviceID, default: []].insert(id) } else { state.fleet.insert(id) }
            return id
        }
        guard let id else { return nil }
        wake.yield()
        return Subscription(id: id, wakes: wakes)
    }

    func unsubscribe(_ id: Int) {
        let removed = state.withLock { state -> Subscriber? in
            guard let subscriber = state.subscribers.removeValue(forKey: id) else { return nil }
            if let deviceID = subscriber.deviceID {
                state.byDevice[deviceID]?.remove(id)
                if state.byDevice[deviceID]?.isEmpty == true { state.byDevice[deviceID] = nil }
            } else {
                state.fleet.remove(id)
            }
            return subscriber
        }
        removed?.wake.finish()
    }

    /// Something about `deviceID` changed: wakes the streams that show it. Cheap when nobody watches (the ingest and
    /// chunk routes call it on every request).
    public func changed(_ topic: Topic, deviceID: String) {
        state.withLock { state in
            var targets = state.byDevice[deviceID] ?? []
            if topic == .ota { targets.formUnion(state.fleet) }
            for id in targets {
                state.subscribers[id]?.dirty.insert(topic)
                state.subscribers[id]?.wake.yield()
            }
        }
    }

    /// The topics that changed since the stream last asked, and the current fleet summary.
    func take(_ id: Int) -> (topics: Set<Topic>, summary: String) {
        state.withLock { state in
            let topics = state.subscribers[id]?.dirty ?? []
            state.subscribers[id]?.dirty = []
            return (topics, state.summary)
        }
    }

    /// Each tick: the summary computed once (when anybody listens) and every stream woken; at shutdown every stream
    /// is ended.
    public func run() async throws {
        await repeatUntilShutdown(every: Self.tick) { [self] in
            guard subscriberCount > 0 else { return }
            let current = summary()
            state.withLock { state in
                let changed = current != state.summary
                state.summary = current
                for id in state.subscribers.keys {
                    if changed { state.subscribers[id]?.dirty.insert(.summary) }
                    state.subscribers[id]?.wake.yield()
                }
            }
        }
        let open = state.withLock { state in
            state.closed = true
            return state.subscribers.values.map(\.wake)
        }
        for wake in open { wake.finish() }
    }

    /// The summary now (a new stream's first event, before the first tick computed it).
    func currentSummary() -> String {
        let cached = state.withLock { $0.summary }
        return cached.isEmpty ? summary() : cached
    }
}
