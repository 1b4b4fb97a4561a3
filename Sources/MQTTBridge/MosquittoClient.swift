import CMosquitto
import Foundation
import Synchronization

/// A libmosquitto client on its own network thread (`mosquitto_loop_start`): connects asynchronously, reconnects with
/// exponential backoff, publishes with QoS 0/1/2 and reports PUBACKs by message id. libmosquitto keeps unacknowledged
/// QoS 1 messages and sends them again after a reconnect, in order.
///
/// `@unchecked Sendable`: the `mosquitto` handle is only used through libmosquitto's thread-safe API (threaded mode);
/// the Swift-side state is behind a `Mutex`.
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

    /// Holds the event handler for the C callbacks (passed as libmosquitto's user data).
    private final class Box: Sendable {
        let onEvent: @Sendable (Event) -> Void
        init(_ onEvent: @escaping @Sendable (Event) -> Void) { self.onEvent = onEvent }
    }

    public let configuration: Configuration
    private let handle: OpaquePointer
    private let box: Box
    private let state = Mutex<(started: Bool, connectPending: Bool, stopped: Bool)>((false, false, false))

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
        mosquitto_reconnect_delay_set(
            handle,
            UInt32(configuration.reconnectMinSeconds),
            UInt32(configuration.reconnectMaxSeconds),
            true
        )
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
    }

    static func check(_ code: Int32, _ what: String) throws {
        guard code == MOSQ_ERR_SUCCESS.rawValue else {
            throw Failure.library("mosquitto_\(what): \(String(cString: mosquitto_strerror(code)))")
        }
    }

    /// Starts the network thread and the first connection attempt. A broker that is down is not an error: the
    /// network thread (or ``retryConnect()``) keeps trying.
    public func start() {
        let first = state.withLock { state -> Bool in
            guard !state.started, !state.stopped else { return false }
            state.started = true
            return true
        }
        guard first else { return }
        // Connect first, then start the thread (libmosquitto's documented order). A thread started before the host is
        // set finds no connection, fails its own reconnects and backs off towards `reconnectMaxSeconds`; it then took
        // over the connection attempt and the first connect waited up to 30 s (seen as a 20 s test timeout under load).
        // (`mosquitto_loop_start` puts the handle in threaded mode itself and refuses a handle already marked threaded
        // with `mosquitto_threaded_set`.) Once started, the thread reconnects by itself with the configured backoff.
        retryConnect()
        let code = mosquitto_loop_start(handle)
        if code != MOSQ_ERR_SUCCESS.rawValue {
            box.onEvent(.connectFailed(reason: "mosquitto_loop_start: \(String(cString: mosquitto_strerror(code)))"))
        }
    }

    /// Starts a connection attempt unless one is under way. libmosquitto's thread reconnects by itself once a
    /// connection attempt has begun; this is for attempts that failed before reaching it (e.g. connection refused at
    /// once, name resolution).
    @discardableResult
    public func retryConnect() -> String? {
        let pending = state.withLock { state -> Bool in
            guard !state.connectPending, !state.stopped else { return true }
            state.connectPending = true
            return false
        }
        guard !pending else { return nil }
        let code = mosquitto_connect_async(handle, configuration.host, Int32(configuration.port), Int32(configuration.keepaliveSeconds))
        if code == MOSQ_ERR_SUCCESS.rawValue { return nil }
        state.withLock { $0.connectPending = false }
        let reason = code == MOSQ_ERR_ERRNO.rawValue ? String(cString: strerror(errno)) : String(cString: mosquitto_strerror(code))
        box.onEvent(.connectFailed(reason: reason))
        return reason
    }

    /// Queues a message; returns its message id (reported again by ``Event/published(messageID:)``).
    public func publish(topic: String, payload: [UInt8], qos: Int32) throws -> Int32 {
        var messageID: Int32 = 0
        let code = payload.withUnsafeBytes { bytes in
            mosquitto_publish(handle, &messageID, topic, Int32(bytes.count), bytes.baseAddress, qos, false)
        }
        try Self.check(code, "publish")
        return messageID
    }

    public func subscribe(topic: String, qos: Int32) throws {
        try Self.check(mosquitto_subscribe(handle, nil, topic, qos), "subscribe")
    }

    /// Disconnects and stops the network thread. Idempotent.
    public func stop() {
        let wasStarted = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.stopped = true
            return state.started
        }
        guard wasStarted else { return }
        mosquitto_disconnect(handle)
        mosquitto_loop_stop(handle, false)
    }
}
