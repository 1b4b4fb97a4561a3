import EcoWattAPI
import EcoWattProtocol

/// `GET /api/v1/security/events|timeline`: what went wrong with devices, from the in-memory ``DeviceEventLog`` (the
/// dashboard's Security page and each device's security events).
extension OperatorAPI {
    func listDeviceEvents(_ input: Operations.ListDeviceEvents.Input) async throws -> Operations.ListDeviceEvents.Output {
        let limit = try Self.limit(input.query.limit, default: 100, maximum: 500)
        let kind = input.query.kind.flatMap { DeviceEventLog.Kind(rawValue: $0.rawValue) }
        let events: [DeviceEventLog.Event]
        if let id = input.query.deviceId {
            events = eventLog.recent(deviceID: try Self.deviceID(id)).filter { kind == nil || $0.kind == kind }
        } else {
            events = eventLog.latest(kind: kind, limit: limit)
        }
        return .ok(.init(body: .json(.init(items: events.prefix(limit).map(Schemas.DeviceEvent.init)))))
    }

    func getEventTimeline(_ input: Operations.GetEventTimeline.Input) async throws -> Operations.GetEventTimeline.Output {
        let hours = input.query.hours ?? 1
        guard (1...24).contains(hours) else { throw APIError(.badRequest, "hours must be in 1...24", code: "invalid") }
        let since = clock() - Int64(hours) * 3_600_000
        let minutes = eventLog.timeline(sinceMs: since).map { minute in
            Schemas.EventMinute(
                minute: MillisecondDates.date(minute.minuteMs),
                counts: .init(additionalProperties: minute.counts.mapValues(Int64.init))
            )
        }
        return .ok(.init(body: .json(.init(since: MillisecondDates.date(since), minutes: minutes))))
    }
}

extension Schemas.DeviceEvent {
    init(_ event: DeviceEventLog.Event) {
        self.init(
            at: MillisecondDates.date(event.atMs),
            deviceId: event.deviceID,
            kind: Schemas.DeviceEventKind(rawValue: event.kind.rawValue) ?? .security,
            reason: event.reason,
            address: event.address
        )
    }
}
