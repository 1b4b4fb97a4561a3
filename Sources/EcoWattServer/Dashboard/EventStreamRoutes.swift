import EcoWattAPI
import EcoWattProtocol
import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle
import Synchronization

/// `GET /api/v1/events`: the dashboard's live updates as Server-Sent Events (issue 20). One stream per tab, woken by
/// ``LiveEvents`` when something it shows changed: the fleet counts (`summary`); with `device_id`, that device's latest
/// sample, commands, OTA sessions and problems; without, every active OTA download (`downloads`, the firmware page).
/// A stream reads only the topics that changed and sends only what differs from what it sent, at most every
/// ``coalesce`` (changes in between are merged into one read), so neither the browser nor the stream polls. Bounded:
/// `max_event_streams` at once (429 beyond), `max_seconds` each (the browser's EventSource reconnects), credentials
/// checked again every 10 s (a logout or a revoked token ends the stream), and ended when the server shuts down.
struct EventStreamRoutes {
    let accounts: AccountService
    let telemetry: TelemetryQueries
    let commands: CommandService
    let ota: OTAService
    let eventLog: DeviceEventLog
    let live: LiveEvents
    let limit: EventStreamLimit

    static let coalesce = Duration.milliseconds(500)
    static let recheck = Duration.seconds(10)
    static let heartbeat = Duration.seconds(15)

    func register(on router: RouterGroup<EcoWattRequestContext>) {
        router.get("/api/v1/events") { request, context in try await stream(request, context) }
    }

    func stream(_ request: Request, _ context: EcoWattRequestContext) async throws -> Response {
        guard RequestIdentity.current?.principal != nil else { throw APIError(.unauthorized, "Authentication required") }
        let query = request.uri.queryParameters
        let deviceID: String? = query.get("device_id").map { String($0) }
        if let deviceID { _ = try OperatorAPI.deviceID(deviceID) }
        let maxSeconds = query.get("max_seconds").map { Int($0) } ?? 300
        guard let maxSeconds, (1...3600).contains(maxSeconds) else {
            throw APIError(.badRequest, "max_seconds must be in 1...3600", code: "invalid")
        }
        guard limit.open() else {
            var error = APIError(.tooManyRequests, "At most \(limit.maximum) live streams are open; try again later", code: "rate_limited")
            error.headers = [(.retryAfter, "10")]
            throw error
        }
        guard let subscription = live.subscribe(deviceID: deviceID) else {
            limit.close()
            throw APIError(.serviceUnavailable, "The server is shutting down", code: "shutting_down")
        }
        let authorization = request.headers[.authorization]
        let cookie = request.headers[values: .cookie].joined(separator: "; ")
        let body = ResponseBody { [self] writer in
            defer {
                live.unsubscribe(subscription.id)
                limit.close()
            }
            var sent: [String: String] = [:]
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(maxSeconds)
            var checked = clock.now
            var lastWrite = clock.now
            for await _ in subscription.wakes {
                if clock.now >= deadline || Task.isCancelled || Task.isShuttingDownGracefully { break }
                if clock.now - checked >= Self.recheck {
                    checked = clock.now
                    guard (try? await accounts.authenticate(authorization: authorization, cookie: cookie)) ?? nil != nil else {
                        try await writer.write(ByteBuffer(string: "event: end\ndata: {\"reason\":\"credentials ended\"}\n\n"))
                        break
                    }
                }
                let (topics, summary) = live.take(subscription.id)
                for (name, payload) in await events(deviceID, topics, summary) where sent[name] != payload {
                    try await writer.write(ByteBuffer(string: "event: \(name)\ndata: \(payload)\n\n"))
                    sent[name] = payload
                    lastWrite = clock.now
                }
                if clock.now - lastWrite >= Self.heartbeat {
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    lastWrite = clock.now
                }
                try? await Task.sleep(for: Self.coalesce)
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        return Response(status: .ok, headers: headers, body: body)
    }

    /// The changed topics' content, as JSON by event name.
    func events(_ deviceID: String?, _ topics: Set<LiveEvents.Topic>, _ summary: String) async -> [(String, String)] {
        var events: [(String, String)] = []
        if topics.contains(.summary) { events.append(("summary", summary.isEmpty ? live.currentSummary() : summary)) }
        guard let deviceID else {
            if topics.contains(.ota), let sessions = try? await ota.activeSessions(limit: 50) {
                events.append(("downloads", Self.json(sessions.map(Components.Schemas.OTASession.init))))
            }
            return events
        }
        if topics.contains(.sample), let sample = try? await telemetry.latest(deviceID) {
            events.append(("sample", Self.json(Components.Schemas.Sample(sample))))
        }
        if topics.contains(.commands), let rows = try? await commands.commands(deviceID: deviceID, status: nil, before: nil, limit: 20) {
            events.append(("commands", Self.json(rows.map(Components.Schemas.Command.init))))
        }
        if topics.contains(.ota), let sessions = try? await ota.sessions(deviceID: deviceID, limit: 5) {
            events.append(("ota", Self.json(sessions.map(Components.Schemas.OTASession.init))))
        }
        if topics.contains(.problems) {
            events.append(("problems", Self.json(eventLog.recent(deviceID: deviceID).map(Components.Schemas.DeviceEvent.init))))
        }
        return events
    }

    static func json(_ value: some Encodable) -> String {
        (try? MillisecondDates.compactJSON(value)) ?? "null"
    }
}

/// Open event streams, bounded.
final class EventStreamLimit: Sendable {
    let maximum: Int
    private let count = Mutex(0)

    init(maximum: Int) { self.maximum = maximum }

    var current: Int { count.withLock { $0 } }

    func open() -> Bool {
        count.withLock { count in
            guard count < maximum else { return false }
            count += 1
            return true
        }
    }

    func close() { count.withLock { $0 -= 1 } }
}
