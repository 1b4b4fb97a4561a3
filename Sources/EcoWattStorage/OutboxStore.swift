import EcoWattProtocol
import Foundation

/// The MQTT outbox: packets queued with their upload, removed once the broker acknowledged them.
public protocol OutboxStore: Sendable {
    /// Queued packets with an outbox id above `afterID`, oldest first, with their samples.
    func outboxBatch(afterID: Int64, limit: Int) async throws -> [OutboxPacket]
    /// Removes every queued packet up to and including `id` (all acknowledged).
    func deleteOutbox(through id: Int64) async throws
    /// Packets waiting.
    func outboxCount() async throws -> Int
}
