import EcoWattProtocol
import Hummingbird
import MQTTBridge

/// `GET /mqtt/status`: the northbound feed's connection and outbox.
struct MQTTRoutes {
    let feed: MQTTPublisher

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/mqtt/status", use: status)
    }

    @Sendable func status(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let status = feed.status
        let client = feed.configuration.client
        return JSONBody.response([
            "success": true, "enabled": .bool(status.enabled), "connected": .bool(status.connected),
            "broker": .string("\(client.host):\(client.port)"), "topic_prefix": .string(feed.configuration.topicPrefix),
            "backlog": .int(Int64(status.backlog)), "inflight": .int(Int64(status.inflight)),
            "published": .int(Int64(status.published)), "failed": .int(Int64(status.failed)),
            "dropped": .int(Int64(status.dropped)), "outbox_limit": .int(Int64(feed.configuration.outboxLimit)),
            "last_error": status.lastError.map(JSONValue.string) ?? .null,
        ])
    }
}
