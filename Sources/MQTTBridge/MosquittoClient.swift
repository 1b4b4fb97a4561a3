import CMosquitto
import Foundation
import Synchronization

/// A libmosquitto client on its own network thread: connects asynchronously, reconnects with exponential backoff,
/// publishes with QoS 0/1/2 and reports PUBACKs by message id. libmosquitto keeps unacknowledged QoS 1 messages and
/// sends them again after a reconnect, in order.
///
/// The thread is ours, not `mosquitto_loop_start`'s: libmosquitto 2.0's loop waits with `select()`, and
/// `mosquitto_loop` returns `MOSQ_ERR_INVAL` without a callback once the socket's descriptor is 1024 or above
/// (eclipse/mosquitto#1299). A server with a thousand device connections gets such a descriptor on its next reconnect,
/// and its feed then stalled silently, retrying with backoff forever (seen as an MQTT test that never connected while
/// the whole suite ran). This loop waits with `poll()`, which takes any descriptor, and drives libmosquitto through
/// `mosquitto_loop_read`/`_write`/`_misc`, the API libmosquitto provides for external loops.
///
/// `@unchecked Sendable`: the `mosquitto` handle is used from other threads only through libmosquitto's thread-safe
/// calls (`mosquitto_threaded_set`); the Swift-side state is behind a `Mutex`.
public final class MosquittoClient: @unchecked Sendable {
    /// Connection settings.
    public struct Configuration: Sendable, Equatable {
        public var host = "127.0.0.1"
        public var port = 1883
        public var clientID = "ecowatt-cloud"
        public var cleanSession = true
        public var username: String?
        public var password: String?
        /// TLS: CA file; with a client certificate and key for mutual TLS.
        public var caFile: String?
        public var certFile: String?
        public var keyFile: String?
        public var keepaliveSeconds = 60
        public var reconnectMinSeconds = 1
        public var reconnectMaxSeconds = 30

        public init() {}
    }

    /// What the network thread reports.
    public enum Event: Sendable {
        case connected
        /// `reason` is libmosquitto's text for the cause (or "requested").
        case disconnected(reason: String)
        /// The broker acknowledged the message with this id (PUBACK for QoS 1; immediately for QoS 0).
        case published(messageID: Int32)
        case message(topic: String, payload: [UInt8])
        case connectFailed(reason: String)
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        case library(String)
        public var description: String {
            switch self {
            case .library(let message): message
            }
        }
    }

    private static let libraryInitialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    /// Holds the event handler for the C callbacks (passed as libmosquitto's user data), and the loop's state, so that
    /// a CONNACK resets the backoff.
    private final class Box: Sendable {
        let handler: @Sendable (Event) -> Void
        let state = Mutex<LoopState>(LoopState())
        init(_ handler: @escaping @Sendable (Event) -> Void) { self.handler = handler }

        func onEvent(_ event: Event) {
            if case .connected = event {
                state.withLock { state in
                    state.connected = true
                    state.failures = 0
                }
            }
            handler(event)
        }
    }

    public let configuration: Configuration
    private let handle: OpaquePointer
    private let box: Box
    /// Wakes the network thread from `poll()` (a publish, a subscribe, a stop).
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let finished = DispatchSemaphore(value: 0)
    private let wakePending = Atomic<Bool>(false)

    struct LoopState {
        var started = false
        var stopped = false
        /// The next connection attempt, while not connected.
        var nextAttempt = ContinuousClock.now
        var failures = 0
        var connected = false
        /// `mosquitto_connect_async` was called once (later attempts use `mosquitto_reconnect_async`).
        var hostSet = false
    }

    public init(configuration: Configuration, onEvent: @escaping @Sendable (Event) -> Void) throws {
        _ = Self.libraryInitialized
        self.configuration = configuration
        let box = Box(onEvent)
        self.box = box
        guard let handle = mosquitto_new(configuration.clientID, configuration.cleanSession, Unmanaged.passUnretained(box).toOpaque())
        else {
            throw Failure.library("mosquitto_new failed")
        }
        self.handle = handle
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            mosquitto_destroy(handle)
            throw Failure.library("pipe2: \(String(cString: strerror(errno)))")
        }
        (wakeRead, wakeWrite) = (pipeEnds[0], pipeEnds[1])
        for end in pipeEnds {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        // Publishes from other threads only queue; this client's thread writes.
        try Self.check(mosquitto_threaded_set(handle, true), "threaded_set")
        if configuration.username != nil || configuration.password != nil {
            try Self.check(mosquitto_username_pw_set(handle, configuration.username, configuration.password), "username_pw_set")
        }
        if configuration.caFile != nil || configuration.certFile != nil {
            try Self.check(
                mosquitto_tls_set(handle, configuration.caFile, nil, configuration.certFile, configuration.keyFile, nil),
                "tls_set"
            )
        }
        mosquitto_connect_callback_set(handle) { _, object, code in
            guard let object else { return }
            let box = Unmanaged<Box>.fromOpaque(object).takeUnretainedValue()
            if code == 0 {
                box.onEvent(.connected)
            } else {
                box.onEvent(.connectFailed(reason: String(cString: mosquitto_connack_string(code))))
            }
        }
        mosquitto_disconnect_callback_set(handle) { _, object, code in
            guard let object else { return }
            let reason = code == 0 ? "requested" : String(cString: mosquitto_strerror(code))
            Unmanaged<Box>.fromOpaque(object).takeUnretainedValue().onEvent(.disconnected(reason: reason))
        }
        mosquitto_publish_callback_set(handle) { _, object, messageID in
            guard let object else { return }
            Unmanaged<Box>.fromOpaque(object).takeUnretainedValue().onEvent(.published(messageID: messageID))
        }
        mosquitto_message_callback_set(handle) { _, object, message in
            guard let object, let message else { return }
            let topic = String(cString: message.pointee.topic)
            let payload: [UInt8] =
                message.pointee.payloadlen > 0
                ? Array(UnsafeRawBufferPointer(start: message.pointee.payload, count: Int(message.pointee.payloadlen))) : []
            Unmanaged<Box>.fromOpaque(object).takeUnretainedValue().onEvent(.message(topic: topic, payload: payload))
        }
    }

    deinit {
        stop()
        mosquitto_destroy(handle)
        close(wakeRead)
        close(wakeWrite)
    }

    static func check(_ code: Int32, _ what: String) throws {
        guard code == MOSQ_ERR_SUCCESS.rawValue else {
            throw Failure.library("mosquitto_\(what): \(String(cString: mosquitto_strerror(code)))")
        }
    }

    /// Starts the network thread, which connects at once and reconnects with backoff while the broker is away. A
    /// broker that is down is not an error.
    public func start() {
        let first = box.state.withLock { state -> Bool in
            guard !state.started, !state.stopped else { return false }
            state.started = true
            return true
        }
        guard first else { return }
        // Weak: a client nobody holds any more stops (its deinit) instead of running on.
        let finished = self.finished
        let thread = Thread { [weak self] in
            while let client = self, client.step() {}
            finished.signal()
        }
        thread.name = networkThreadName
        thread.start()
    }

    /// Queues a message; returns its message id (reported again by ``Event/published(messageID:)``).
    public func publish(topic: String, payload: [UInt8], qos: Int32) throws -> Int32 {
        var messageID: Int32 = 0
        let code = payload.withUnsafeBytes { bytes in
            mosquitto_publish(handle, &messageID, topic, Int32(bytes.count), bytes.baseAddress, qos, false)
        }
        try Self.check(code, "publish")
        wake()
        return messageID
    }

    public func subscribe(topic: String, qos: Int32) throws {
        try Self.check(mosquitto_subscribe(handle, nil, topic, qos), "subscribe")
        wake()
    }

    /// Disconnects and stops the network thread (waits for it). Idempotent.
    public func stop() {
        let wasStarted = box.state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.stopped = true
            return state.started
        }
        guard wasStarted else { return }
        mosquitto_disconnect(handle)
        wake()
        // Not on the network thread itself (a last reference released there runs deinit there).
        if Thread.current.name != networkThreadName { finished.wait() }
    }

    private var networkThreadName: String { "mosquitto \(configuration.clientID)" }

    /// Wakes the network thread once: publishes in a burst share one pipe write (the thread clears the flag before it
    /// looks at the queue, so nothing queued after that waits for the poll timeout).
    private func wake() {
        guard !wakePending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func drainWakes() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }

    /// One turn of the network thread: connects when due, then waits on the socket and the wake pipe, reads, writes,
    /// and keeps the connection alive. False once ``stop()`` was called.
    private func step() -> Bool {
        let (stopped, due) = box.state.withLock { ($0.stopped, $0.nextAttempt <= .now) }
        if stopped {
            // Flush the DISCONNECT queued by stop().
            if mosquitto_socket(handle) >= 0 { _ = mosquitto_loop_write(handle, 1) }
            return false
        }
        var socket = mosquitto_socket(handle)
        if socket < 0, due {
            connect()
            socket = mosquitto_socket(handle)
        }
        var descriptors = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        if socket >= 0 {
            let events = POLLIN | (mosquitto_want_write(handle) ? POLLOUT : 0)
            descriptors.append(pollfd(fd: socket, events: Int16(events), revents: 0))
        }
        // Connected: wake at least every second for the keepalive; otherwise when the next attempt is due.
        let timeout: Int32 = socket >= 0 ? 1000 : nextAttemptDelayMs()
        if poll(&descriptors, nfds_t(descriptors.count), timeout) < 0, errno != EINTR { usleep(10_000) }
        let woken = descriptors[0].revents & Int16(POLLIN) != 0
        if woken {
            wakePending.store(false, ordering: .releasing)
            drainWakes()
        }
        guard socket >= 0 else { return true }
        // Errors are reported through the disconnect callback (and the socket is closed), not by the return codes.
        let events = descriptors[1].revents
        if events & Int16(POLLIN | POLLERR | POLLHUP) != 0 { _ = mosquitto_loop_read(handle, 1) }
        if mosquitto_socket(handle) >= 0, events & Int16(POLLOUT) != 0 || (woken && mosquitto_want_write(handle)) {
            _ = mosquitto_loop_write(handle, 1)
        }
        if mosquitto_socket(handle) >= 0 { _ = mosquitto_loop_misc(handle) }
        if mosquitto_socket(handle) < 0 { connectionLost() }
        return true
    }

    /// Starts a non-blocking connection attempt and schedules the next one after the backoff (used only if this one
    /// fails); a failure at once (refused, name resolution) is reported as `connectFailed`.
    private func connect() {
        let hostSet = box.state.withLock { state in
            defer {
                state.hostSet = true
                // min, 2×min, 4×min, … up to max seconds; a CONNACK resets it.
                let delay = min(configuration.reconnectMinSeconds << min(state.failures, 16), configuration.reconnectMaxSeconds)
                state.failures += 1
                state.nextAttempt = .now + .seconds(max(1, delay))
            }
            return state.hostSet
        }
        let code =
            hostSet
            ? mosquitto_reconnect_async(handle)
            : mosquitto_connect_async(handle, configuration.host, Int32(configuration.port), Int32(configuration.keepaliveSeconds))
        guard code != MOSQ_ERR_SUCCESS.rawValue else { return }
        let reason = code == MOSQ_ERR_ERRNO.rawValue ? String(cString: strerror(errno)) : String(cString: mosquitto_strerror(code))
        box.onEvent(.connectFailed(reason: reason))
    }

    /// The connection is gone: after a working connection, the next attempt comes after the minimum delay; after a
    /// failed attempt, when ``connect()`` scheduled it.
    private func connectionLost() {
        box.state.withLock { state in
            guard state.connected else { return }
            state.connected = false
            state.nextAttempt = .now + .seconds(max(1, configuration.reconnectMinSeconds))
        }
    }

    private func nextAttemptDelayMs() -> Int32 {
        let remaining = box.state.withLock { $0.nextAttempt } - .now
        let (seconds, attoseconds) = remaining.components
        return Int32(clamping: max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
    }
}
