import EcoWattAPI
import EcoWattProtocol
import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle
import Synchronization

/// `GET /api/v1/events`: the dashboard's live updates as Server-Sent Events (issue 20). One stream per tab; every
/// 2 s the server compares what the page shows (fleet counts; with `device_id`, that device's latest sample and
/// commands) with what it sent and sends only what changed, so events are coalesced to at most one of each kind per
/// tick and the browser never polls. Bounded: `max_event_streams` at once (429 beyond), `max_seconds` each (the
/// browser's EventSource reconnects), credentials checked again every 10 s (a logout or a revoked token ends the
/// stream), and ended within a tick when the server shuts down.
struct EventStreamRoutes {
    let accounts: AccountService
    let devices: DeviceService
    let telemetry: TelemetryQueries
    let commands: CommandService
    let ota: OTAService
    let ingest: IngestService
    let limit: EventStreamLimit

    static let tick = Duration.seconds(2)
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
        let authorization = request.headers[.authorization]
        let cookie = request.headers[values: .cookie].joined(separator: "; ")
        let body = ResponseBody { [self] writer in
            defer { limit.close() }
            var sent: [String: String] = [:]
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(maxSeconds)
            var checked = clock.now
            var lastWrite = clock.now
            while clock.now < deadline, !Task.isCancelled, !Task.isShuttingDownGracefully {
                if clock.now - checked >= Self.recheck {
                    checked = clock.now
                    guard (try? await accounts.authenticate(authorization: authorization, cookie: cookie)) ?? nil != nil else {
                        try await writer.write(ByteBuffer(string: "event: end\ndata: {\"reason\":\"credentials ended\"}\n\n"))
                        break
                    }
                }
                for (name, payload) in await events(deviceID) where sent[name] != payload {
                    try await writer.write(ByteBuffer(string: "event: \(name)\ndata: \(payload)\n\n"))
                    sent[name] = payload
                    lastWrite = clock.now
                }
                if clock.now - lastWrite >= Self.heartbeat {
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    lastWrite = clock.now
                }
                try? await Task.sleep(for: Self.tick)
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        return Response(status: .ok, headers: headers, body: body)
    }

    /// What the page shows now, as JSON by event name.
    func events(_ deviceID: String?) async -> [(String, String)] {
        var events = [("summary", Self.json(Components.Schemas.FleetSummary.now(devices: devices, ota: ota, ingest: ingest)))]
        guard let deviceID else { return events }
        if let sample = try? await telemetry.latest(deviceID) { events.append(("sample", Self.json(Components.Schemas.Sample(sample)))) }
        if let rows = try? await commands.commands(deviceID: deviceID, status: nil, before: nil, limit: 20) {
            events.append(("commands", Self.json(rows.map(Components.Schemas.Command.init))))
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
