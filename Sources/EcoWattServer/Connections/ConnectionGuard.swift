import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Open connections in all and per client address (issue 13). Over either cap a new connection is answered 503 and
/// closed at once: the accept loop keeps draining, so a flood from one address never holds the descriptors other
/// devices need.
final class ConnectionLimiter: Sendable {
    let maxTotal: Int
    let maxPerAddress: Int
    private let state = Mutex<(total: Int, perAddress: [String: Int])>((0, [:]))

    init(maxTotal: Int, maxPerAddress: Int) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
    }

    /// Counts a new connection from `address`; the reason when it must be refused instead.
    func open(_ address: String) -> String? {
        state.withLock { state in
            if state.total >= maxTotal { return "total" }
            if state.perAddress[address, default: 0] >= maxPerAddress { return "per_address" }
            state.total += 1
            state.perAddress[address, default: 0] += 1
            return nil
        }
    }

    func close(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let remaining = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = remaining > 0 ? remaining : nil
        }
    }

    var openConnections: Int { state.withLock { $0.total } }
}

/// The HTTP/1.1 child channel of every connection: Hummingbird's `HTTP1Channel` (idle timeout included) behind
/// ``ConnectionLimiter`` and with header and body read timeouts (``RequestDeadlineHandler``).
struct GuardedHTTP1Channel: ServerChildChannel {
    /// The HTTP channel, or `nil` for a refused connection (answered and closing). A refusal must not fail the setup:
    /// a failed child setup ends the server's accept loop.
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        let http: HTTP1Channel.Value?
    }

    let base: HTTP1Channel
    let limiter: ConnectionLimiter
    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let metrics: ServerMetrics

    /// The server of ``EcoWattApplication``: HTTP/1.1 with `limits`' timeouts behind `limiter`.
    static func server(limits: ServerLimits, limiter: ConnectionLimiter, metrics: ServerMetrics) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            GuardedHTTP1Channel(
                base: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .seconds(Int64(limits.idleTimeoutSeconds)))),
                limiter: limiter,
                headerTimeout: .seconds(Int64(limits.headerTimeoutSeconds)),
                bodyTimeout: .seconds(Int64(limits.bodyTimeoutSeconds)),
                metrics: metrics
            )
        }
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        if let reason = limiter.open(address) {
            metrics.increment("ecowatt_connections_refused_total", [("reason", reason)])
            let body = #"{"success":false,"error":"Too many connections, retry later"}"#
            let reply =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
                + "Connection: close\r\nRetry-After: 5\r\n\r\n" + body
            channel.writeAndFlush(ByteBuffer(string: reply)).whenComplete { _ in channel.close(promise: nil) }
            return channel.eventLoop.makeSucceededFuture(Value(channel: channel, http: nil))
        }
        channel.closeFuture.whenComplete { _ in limiter.close(address) }
        let headerTimeout = headerTimeout
        let bodyTimeout = bodyTimeout
        let metrics = metrics
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                RequestDeadlineHandler(headerTimeout: headerTimeout, bodyTimeout: bodyTimeout, metrics: metrics),
                position: .first
            )
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }.flatMapThrowing { value in
            // Between the HTTP decoder and Hummingbird's codec, where request heads and ends are seen.
            let operations = channel.pipeline.syncOperations
            let decoder = try operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            let deadline = try operations.handler(type: RequestDeadlineHandler.self)
            try operations.addHandler(RequestPhaseHandler(deadline: deadline), position: .after(decoder.handler))
            return Value(channel: channel, http: value)
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let http = value.http else { return }
        await base.handle(value: http, logger: logger)
    }
}

/// First handler of a connection, before the HTTP decoder: it sees the first byte of each request, so it can close a
/// connection whose request head is not complete within `headerTimeout`, or whose body is not complete within
/// `bodyTimeout` of the head (slow-header and slow-body clients). Idle keep-alive connections are Hummingbird's idle
/// timeout's.
///
/// Each phase only moves the connection's deadline; one timer per connection checks it and re-arms itself for a
/// deadline that moved later. Scheduling and cancelling a timer for every head and every end took 1.2–3 % of the
/// server's CPU in `perf` profiles of keep-alive uploads and rejections (two timers per request); now a busy connection
/// schedules about one per `min(headerTimeout, bodyTimeout)`.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Phase { case idle, head, body, responding }

    private let headerTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private let metrics: ServerMetrics
    private var phase = Phase.idle
    /// When the current phase must have ended: `nil` while idle or responding.
    private var deadline: NIODeadline?
    /// The pending check and when it runs.
    private var timer: (task: Scheduled<Void>, at: NIODeadline)?
    private var context: ChannelHandlerContext?

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount, metrics: ServerMetrics) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.metrics = metrics
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.task.cancel()
        timer = nil
        deadline = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if phase == .idle {
            phase = .head
            arm(headerTimeout)
        }
        context.fireChannelRead(data)
    }

    /// The decoder produced a request head: the body's deadline starts.
    func headReceived() {
        phase = .body
        arm(bodyTimeout)
    }

    /// The whole request arrived: no read deadline while the server answers (a pending check finds none and stops).
    func requestEnded() {
        phase = .responding
        deadline = nil
    }

    /// The response was written: the next byte starts the next request.
    func responseEnded() {
        if phase == .responding { phase = .idle }
    }

    private func arm(_ timeout: TimeAmount) {
        let deadline = NIODeadline.now() + timeout
        self.deadline = deadline
        // A pending check that runs no later than the new deadline re-arms itself when it finds the deadline moved.
        if let timer, timer.at <= deadline { return }
        schedule(at: deadline)
    }

    private func schedule(at when: NIODeadline) {
        timer?.task.cancel()
        guard let context else { return }
        let task = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: when) { [self] in
            timer = nil
            check()
        }
        timer = (task, when)
    }

    private func check() {
        guard let deadline, let context else { return }
        if deadline > .now() {
            schedule(at: deadline)
            return
        }
        metrics.increment("ecowatt_connections_timed_out_total", [("phase", phase == .head ? "header" : "body")])
        context.close(promise: nil)
    }
}

/// Tells ``RequestDeadlineHandler`` where each request is: after the HTTP decoder, it sees heads, ends and responses.
final class RequestPhaseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let deadline: RequestDeadlineHandler

    init(deadline: RequestDeadlineHandler) {
        self.deadline = deadline
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadline.headReceived()
        case .end: deadline.requestEnded()
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { deadline.responseEnded() }
        context.write(data, promise: promise)
    }
}
