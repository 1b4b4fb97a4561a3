import EcoWattProtocol
import EcoWattStorage
import Logging
import ServiceLifecycle
import Synchronization

/// Drains the MQTT outbox to the broker: rows in id order (so in order per device), deleted only after the broker
/// acknowledged them (QoS 1), resumed after a reconnect or a restart. Delivery is at least once: messages in flight
/// when the connection drops are sent again.
public final class MQTTPublisher: Service, Sendable {
    public struct Configuration: Sendable, Equatable {
        public var enabled = true
        public var client = MosquittoClient.Configuration()
        public var qos: Int32 = 1
        public var topicPrefix = "ecowatt/data"
        /// Operational events (a rollout halted, advanced, completed) go to `{eventsPrefix}/{kind}`.
        public var eventsPrefix = "ecowatt/events"
        /// Most messages waiting; beyond it uploads are still accepted and their messages counted as dropped.
        public var outboxLimit = 1_000_000
        /// Messages published but not yet acknowledged.
        public var maxInflight = 1000

        public init() {}
    }

    /// The figures of `GET /mqtt/status`.
    public struct Status: Sendable, Equatable {
        public var enabled: Bool
        public var connected = false
        /// Messages in the outbox (queued, in flight, or acknowledged and about to be deleted).
        public var backlog = 0
        public var inflight = 0
        /// Acknowledged by the broker since start.
        public var published = 0
        /// Publish calls libmosquitto refused since start.
        public var failed = 0
        /// Messages not queued because the outbox was full, since start.
        public var dropped = 0
        public var lastError: String?
    }

    struct State {
        var status: Status
        /// libmosquitto message id → outbox id, until the PUBACK.
        var inflight: [Int32: Int64] = [:]
        /// Outbox ids in publish order since the last reset, from `sentHead` on.
        var sent: [Int64] = []
        var sentHead = 0
        /// PUBACKs that arrived before `publish` returned their message id.
        var earlyAcks: Set<Int32> = []
        /// Acknowledged ids not yet contiguous with the watermark.
        var acked: Set<Int64> = []
        /// Every outbox id up to this one is acknowledged.
        var watermark: Int64 = 0
        /// Acknowledged rows not yet deleted.
        var undeleted = 0
        /// The highest outbox id handed to libmosquitto.
        var lastQueuedID: Int64 = 0
        /// Incremented on every disconnect (publishes from before it are forgotten).
        var generation = 0

        /// Records the broker's acknowledgement of `id` and advances the watermark over the acknowledged prefix.
        mutating func acknowledge(_ id: Int64) {
            acked.insert(id)
            status.published += 1
            while sentHead < sent.count, acked.remove(sent[sentHead]) != nil {
                watermark = sent[sentHead]
                sentHead += 1
                undeleted += 1
            }
            if sentHead > 4096 {
                sent.removeFirst(sentHead)
                sentHead = 0
            }
        }
        /// Connection attempts failed since the last connection.
        var failedAttempts = 0
        /// Events waiting for a connection (at most ``MQTTPublisher/maxPendingEvents``, the oldest dropped).
        var events: [(topic: String, payload: [UInt8])] = []
    }

    /// Events kept while the broker is away.
    public static let maxPendingEvents = 100

    public let configuration: Configuration
    let store: any OutboxStore
    let logger: Logger
    private let state: LockedState
    private let client: MosquittoClient?
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let lastDelete = Mutex(ContinuousClock.now)
    /// With `waitForListener`, ``run()`` connects only after ``listenerReady()``.
    private let waitForListener: Bool
    private let startSignal: AsyncStream<Void>
    private let startContinuation: AsyncStream<Void>.Continuation
    /// Admission counters, lock-free: the ingest actor reads them for every upload and must never wait for the
    /// publisher or libmosquitto's thread.
    private let backlog = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)

    public init(configuration: Configuration, store: any OutboxStore, logger: Logger, waitForListener: Bool = false) async throws {
        self.configuration = configuration
        self.waitForListener = waitForListener
        (startSignal, startContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.store = store
        self.logger = logger
        let status = Status(enabled: configuration.enabled)
        let initialBacklog = try await store.outboxCount()
        let state = LockedState(State(status: status))
        self.state = state
        backlog.store(initialBacklog, ordering: .relaxed)
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        guard configuration.enabled else {
            client = nil
            return
        }
        let wake = self.wake
        let broker = "\(configuration.client.host):\(configuration.client.port)"
        client = try MosquittoClient(configuration: configuration.client) { event in
            let change = state.withLock { state -> FeedChange? in
                var change: FeedChange?
                switch event {
                case .connected:
                    change = .connected(after: state.failedAttempts)
                    state.status.connected = true
                    state.status.lastError = nil
                    state.failedAttempts = 0
                case .disconnected(let reason):
                    if reason != "requested" {
                        if state.status.connected {
                            change = .lost(reason)
                        } else {
                            // An attempt in progress failed (refused or reset before the CONNACK).
                            state.failedAttempts += 1
                            if state.failedAttempts % 10 == 1 { change = .unreachable(reason, attempts: state.failedAttempts) }
                        }
                        state.status.lastError = "disconnected: \(reason)"
                    }
                    state.status.connected = false
                    // Everything after the watermark is sent again from the outbox after the reconnect.
                    state.lastQueuedID = state.watermark
                    state.generation += 1
                    state.inflight = [:]
                    state.sent = []
                    state.sentHead = 0
                    state.acked = []
                    state.earlyAcks = []
                case .connectFailed(let reason):
                    state.status.connected = false
                    state.failedAttempts += 1
                    // The first failure, a new reason, then every 10th: a broker down for a day writes a few lines.
                    let error = "connect failed: \(reason)"
                    if state.status.lastError != error || state.failedAttempts % 10 == 1 {
                        change = .unreachable(reason, attempts: state.failedAttempts)
                    }
                    state.status.lastError = error
                case .published(let messageID):
                    if let id = state.inflight.removeValue(forKey: messageID) {
                        state.acknowledge(id)
                    } else {
                        state.earlyAcks.insert(messageID)
                    }
                case .message:
                    break
                }
                return change
            }
            // Logged outside the lock (libmosquitto's thread holds no lock of ours while logging).
            switch change {
            case .connected(let attempts):
                logger.info("MQTT connected", metadata: ["broker": "\(broker)", "failed_attempts": "\(attempts)"])
            case .lost(let reason):
                logger.warning("MQTT connection lost; reconnecting", metadata: ["broker": "\(broker)", "reason": "\(reason)"])
            case .unreachable(let reason, let attempts):
                logger.warning(
                    "MQTT broker unreachable; uploads are kept in the outbox and forwarded once it is back",
                    metadata: ["broker": "\(broker)", "reason": "\(reason)", "attempts": "\(attempts)"]
                )
            case nil:
                break
            }
            wake.yield()
        }
    }

    /// What the connection did, for the log.
    enum FeedChange {
        case connected(after: Int)
        case lost(String)
        case unreachable(String, attempts: Int)
    }

    /// Lets ``run()`` connect: the server calls it once its HTTP port is bound, so a server that cannot bind never
    /// connects under the shared client id and disconnects the one that runs (issue 16).
    public func listenerReady() {
        startContinuation.yield()
        startContinuation.finish()
    }

    /// Whether the packets of one accepted upload go into the outbox: not when the feed is disabled, nor when the outbox
    /// is full (then they are counted as dropped). Called before the upload's transaction.
    public func admit(_ packets: Int) -> Bool {
        guard configuration.enabled, packets > 0 else { return false }
        guard backlog.load(ordering: .relaxed) + packets > configuration.outboxLimit else { return true }
        let dropped = self.dropped.add(packets, ordering: .relaxed).newValue
        if dropped == packets || dropped / 10_000 != (dropped - packets) / 10_000 {
            logger.warning(
                "MQTT outbox full: uploads are stored but not forwarded",
                metadata: ["limit": "\(configuration.outboxLimit)", "dropped": "\(dropped)"]
            )
        }
        return false
    }

    /// Called after the upload's transaction committed `count` outbox rows.
    public func committed(_ count: Int) {
        guard count > 0 else { return }
        backlog.add(count, ordering: .relaxed)
        wake.yield()
    }

    public var status: Status {
        state.withLock { state in
            var status = state.status
            status.inflight = state.inflight.count
            status.backlog = backlog.load(ordering: .relaxed)
            status.dropped = dropped.load(ordering: .relaxed)
            return status
        }
    }

    public func run() async throws {
        guard let client else {
            try? await gracefulShutdown()
            return
        }
        if waitForListener {
            let ready = await cancelWhenGracefulShutdown { [startSignal] in
                for await _ in startSignal { return true }
                return false
            }
            guard ready else { return }
        }
        client.start()
        logger.info(
            "MQTT feed started",
            metadata: ["broker": "\(configuration.client.host):\(configuration.client.port)", "prefix": "\(configuration.topicPrefix)"]
        )
        await cancelWhenGracefulShutdown { await self.drain(client) }
        await deleteAcknowledged(force: true)
        client.stop()
        logger.info("MQTT feed stopped", metadata: ["backlog": "\(backlog.load(ordering: .relaxed))"])
    }

    /// An operational event on `{eventsPrefix}/{kind}` (issue 21: rollout decisions). Sent at QoS 0 once connected:
    /// kept in memory meanwhile (at most ``maxPendingEvents``), not in the outbox and not across a restart; the audit
    /// trail is the durable record. (QoS 0 keeps the broker's acknowledgements for the outbox alone.)
    public func event(kind: String, payload: [UInt8]) {
        guard client != nil else { return }
        state.withLock { state in
            state.events.append((topic: "\(configuration.eventsPrefix)/\(kind)", payload: payload))
            if state.events.count > Self.maxPendingEvents { state.events.removeFirst(state.events.count - Self.maxPendingEvents) }
        }
        wake.yield()
    }

    /// Sends the events waiting, if connected.
    private func publishEvents(_ client: MosquittoClient) {
        let events = state.withLock { state -> [(topic: String, payload: [UInt8])] in
            guard state.status.connected else { return [] }
            defer { state.events = [] }
            return state.events
        }
        for event in events {
            do {
                _ = try client.publish(topic: event.topic, payload: event.payload, qos: 0)
            } catch {
                state.withLock { $0.status.lastError = "event publish failed: \(error)" }
            }
        }
    }

    /// Publishes while connected, retries connecting while not, until cancelled.
    private func drain(_ client: MosquittoClient) async {
        while !Task.isCancelled {
            await deleteAcknowledged()
            publishEvents(client)
            let (connected, room) = state.withLock { ($0.status.connected, configuration.maxInflight - $0.inflight.count) }
            if !connected {
                // The client's network thread reconnects with backoff; a connection wakes this loop.
                await waitForWork()
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            var sent = 0
            if room > 0 { sent = await publishBatch(client, limit: min(room, 500)) }
            if sent < 100 {
                // Small batches cost a read transaction each: under a steady trickle of uploads, gather a few
                // milliseconds' worth per batch instead of waking for every commit.
                if sent == 0 { await waitForWork() }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// Waits for an event (new rows, an ack, a connection change) or 50 ms.
    private func waitForWork() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [wakes] in
                for await _ in wakes { return }
            }
            group.addTask { try? await Task.sleep(for: .milliseconds(50)) }
            await group.next()
            group.cancelAll()
        }
    }

    private func publishBatch(_ client: MosquittoClient, limit: Int) async -> Int {
        let after = state.withLock { $0.lastQueuedID }
        let batch: [OutboxPacket]
        do {
            batch = try await store.outboxBatch(afterID: after, limit: limit)
        } catch {
            state.withLock { $0.status.lastError = "outbox read failed: \(error)" }
            return 0
        }
        var sent = 0
        for message in batch {
            do {
                let generation = state.withLock { state -> Int? in
                    state.status.connected && state.lastQueuedID < message.id ? state.generation : nil
                }
                guard let generation else { throw CancellationError() }
                // Not under the lock: libmosquitto's thread takes it in its callbacks.
                let messageID = try client.publish(
                    topic: TelemetryMessage.topic(prefix: configuration.topicPrefix, deviceID: message.deviceID),
                    payload: TelemetryMessage.payload(message),
                    qos: configuration.qos
                )
                state.withLock { state in
                    // A disconnect in between resets the queue; the message is sent again after the reconnect.
                    guard state.generation == generation else { return }
                    state.sent.append(message.id)
                    state.lastQueuedID = message.id
                    if state.earlyAcks.remove(messageID) != nil {
                        state.acknowledge(message.id)
                    } else {
                        state.inflight[messageID] = message.id
                    }
                }
                sent += 1
            } catch is CancellationError {
                break
            } catch {
                state.withLock { state in
                    state.status.failed += 1
                    state.status.lastError = "publish failed: \(error)"
                }
                break
            }
        }
        return sent
    }

    /// Deletes the acknowledged prefix of the outbox in one range delete (at most every 200 ms while busy).
    private func deleteAcknowledged(force: Bool = false) async {
        let now = ContinuousClock.now
        let pending = state.withLock { state -> (Int64, Int)? in
            guard state.undeleted > 0, force || state.undeleted >= 2000 || now - lastDelete.withLock({ $0 }) >= .milliseconds(200)
            else { return nil }
            return (state.watermark, state.undeleted)
        }
        guard let (watermark, count) = pending else { return }
        lastDelete.withLock { $0 = now }
        do {
            try await store.deleteOutbox(through: watermark)
            state.withLock { $0.undeleted -= count }
            backlog.subtract(count, ordering: .relaxed)
        } catch {
            // Kept in the outbox: they are sent again after a restart (at least once).
            state.withLock { $0.status.lastError = "outbox delete failed: \(error)" }
        }
    }
}

/// The publisher's state behind a lock, shared with libmosquitto's callback thread.
final class LockedState: Sendable {
    private let mutex: Mutex<MQTTPublisher.State>

    init(_ state: MQTTPublisher.State) {
        mutex = Mutex(state)
    }

    func withLock<T, E: Error>(_ body: (inout MQTTPublisher.State) throws(E) -> T) throws(E) -> T {
        try mutex.withLock { state throws(E) -> T in try body(&state) }
    }
}
